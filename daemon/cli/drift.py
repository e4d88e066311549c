"""`specd drift MODEL`: the drift of a model's logged production traffic against its training data.

Runs the same check the daemon runs from the model's observe (daemon/adapters/models/drift.py): the
cached reference profile of the champion's training table at its Delta version vs a bounded sample of the
prediction log. By default a fresh check is run and stored as the last result; `--cached` prints the
daemon's last verdict instead. A model spec without `monitoring:` is checked with the defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "drift", help="drift of a model's production traffic against its training data (per feature, share, prediction)",
        description="Examples:\n  specd drift penguin_sex\n  specd drift penguin_sex --json\n"
                    "  specd drift penguin_sex --report drift.html",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model name (specs/models/<name>.yaml)")
    parser.add_argument("--repo", default=".", help="git repository with the specs (default: current directory)")
    parser.add_argument("--env", default="dev", help="environment overlay in environments/ (default: dev)")
    parser.add_argument("--home", default=None, help="state root (default: $SPECD_HOME or ./.specd)")
    parser.add_argument("--cached", action="store_true", help="print the last stored verdict instead of checking again")
    parser.add_argument("--report", default=None, metavar="FILE.html", help="write a self-contained HTML report")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run, override=[])
    return parser


def run(args: argparse.Namespace) -> int:
    from daemon.adapters.models.drift import last_report, run_check
    from daemon.cli.main import _desired
    from daemon.runtime.reconcile import context_for
    from daemon.schema.monitoring import MonitoringSpec
    from daemon.shared.paths import bentoml_home, specd_home
    from flows.monitoring.html import render_text, write_html
    from flows.training import registry

    home = specd_home(args.home)
    if args.cached:
        cached = last_report(home, args.model)
        if cached is None:
            print(f"specd drift: no stored drift check for model {args.model!r} under {home}", file=sys.stderr)
            return 2
        report = cached[1]
    else:
        desired = _desired(args, None)
        resource = next((r for r in desired.graph.resources if r.kind == "model" and r.name == args.model), None)
        if resource is None:
            print(f"specd drift: no model {args.model!r} in the specs (env {args.env})", file=sys.stderr)
            return 2
        release = registry.current_release(args.model, str(bentoml_home(home)))
        if release is None or release.champion is None:
            print(f"specd drift: model {args.model!r} has no champion yet (nothing trained to compare with)", file=sys.stderr)
            return 2
        spec = resource.spec if resource.spec.monitoring is not None else resource.spec.model_copy(update={"monitoring": MonitoringSpec()})
        report = run_check(context_for(desired, home), args.model, spec, release)
    if args.report:
        write_html(report, Path(args.report))
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(render_text(report))
        if report.dataset_drift:
            print(f"  {report.reason()}")
        if args.report:
            print(f"report written to {args.report}")
    return 0
