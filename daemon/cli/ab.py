"""`specd ab SERVICE`: per-variant online metrics of a live A/B service, with uncertainty, power and SRM checks.

The service's prediction and feedback Delta logs (their URIs come from the live routing file) are reduced
by one DuckDB query (`bentos.ab_report.query`) over the last `--window` (14 days by default: a report over
all history would drift away from what is serving now) and analysed by `bentos.ab_report.build_report`:
lift with a confidence interval, an always-valid (mSPRT) p-value that survives repeated looks, the sample
still needed, and a sample-ratio-mismatch check of the current routing. `--report FILE.html` writes a
self-contained HTML report with the metric over time per variant.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bentos.ab_report import ABReport, build_report, open_logs, query, render

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"--window: expected a duration like 30m, 12h, 14d or 2w, got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ab", help="per-variant online metrics of an A/B service: lift, sequential test, power, sample ratio",
        description="Examples:\n  specd ab penguin_api\n  specd ab penguin_api --window 48h --report ab.html\n"
                    "  specd ab penguin_api --since 2026-11-01T00:00:00+00:00 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("service", help="service name (specs/services/<name>.yaml)")
    parser.add_argument("--champion", default="champion", help="variant the others are compared against")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level")
    parser.add_argument("--window", type=parse_duration, default=timedelta(days=14),
                        help="how far back to read the logs (default 14d; ignored with --since or --all)")
    parser.add_argument("--since", default=None, help="ISO time: start of the window")
    parser.add_argument("--until", default=None, help="ISO time: end of the window (default now)")
    parser.add_argument("--all", action="store_true", help="read the whole history")
    parser.add_argument("--bucket", default=None, help="time between looks for the sequential test and the plot (default: 1 hour for windows up to 2 days, else 1 day)")
    parser.add_argument("--tau", type=float, default=None, help="mSPRT mixing scale: the effect size worth detecting (default 0.05 accuracy, 10%% of the champion's error)")
    parser.add_argument("--report", default=None, metavar="FILE.html", help="write a self-contained HTML report (tables and the metric over time)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--propose", action="store_true",
                        help="evaluate the service's promotion.online rule once; on a verdict commit the promotion "
                             "(proposal branch, or the watched branch with auto_promote: true)")
    parser.add_argument("--repo", default=".", help="git repository for --propose and the open proposals (default: current directory)")
    parser.add_argument("--branch", default=None, help="watched branch (default: the repository's current branch, or main)")
    parser.add_argument("--env", default="dev", help="environment overlay (default: dev)")
    if not any(a.dest == "home" for a in parser._actions):
        parser.add_argument("--home", default=None, help="state home (default $SPECD_HOME or ./.specd)")
    parser.set_defaults(handler=run)
    return parser


def _window(args: argparse.Namespace) -> tuple[str | None, str | None, str]:
    until = getattr(args, "until", None)
    given = getattr(args, "since", None)
    if getattr(args, "all", False) or given:
        since = given
    else:
        end = datetime.fromisoformat(until) if until else datetime.now(UTC)
        since = (end - getattr(args, "window", timedelta(days=14))).isoformat()
    span = (datetime.fromisoformat(until) if until else datetime.now(UTC)) - datetime.fromisoformat(since) if since else None
    bucket = getattr(args, "bucket", None) or ("1 hour" if span is not None and span <= timedelta(days=2) else "1 day")
    return since, until, bucket


def run(args: argparse.Namespace) -> int:
    from bentos.routing import read_routing
    from daemon.adapters.services.supervisor import Supervisor
    from daemon.shared.paths import specd_home
    from daemon.shared.storage_uri import log_options

    home = specd_home(getattr(args, "home", None))
    routing_file = Supervisor(Path(home)).routing_file(args.service)
    try:
        routing = read_routing(routing_file)
        settings = routing.settings["prediction_log"]
    except (OSError, ValueError, KeyError, TypeError):
        print(f"specd ab: service {args.service!r} has no live routing under {routing_file.parent} (is it deployed?)", file=sys.stderr)
        return 2
    options = log_options(settings, home)
    since, until, bucket = _window(args)
    predictions, feedback = open_logs(settings["predictions_uri"], settings["feedback_uri"], options)
    totals, buckets = query(predictions, feedback, since=since, until=until, bucket=bucket, routing_fingerprint=routing.fingerprint)
    weights = {v.name: v.weight for v in routing.variants}
    current = {r["variant"]: int(r["current_requests"] or 0) for r in totals}
    report = build_report(args.service, totals, buckets, champion=args.champion, alpha=args.alpha, weights=weights,
                          current_counts=current, window=(since, until), bucket=bucket, tau=getattr(args, "tau", None))
    if getattr(args, "report", None):
        from bentos.ab_html import write_html

        write_html(report, Path(args.report))
    proposals = _open_proposals(args)
    if args.json:
        data = to_json(report)
        data["open_proposals"] = [asdict(p) for p in proposals]
        print(json.dumps(data, indent=2, default=str))
    else:
        print(render(report))
        if getattr(args, "report", None):
            print(f"report written to {args.report}")
        for p in proposals:
            print(f"open proposal: {p.branch} {p.commit[:12]} {p.subject}")
    if getattr(args, "propose", False):
        return _propose(args, home)
    return 0


def watched_branch(repo: str, branch: str | None) -> str:
    import subprocess

    from daemon.runtime.source import is_remote

    if branch:
        return branch
    if not is_remote(repo):
        result = subprocess.run(["git", "symbolic-ref", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    return "main"


def _open_proposals(args: argparse.Namespace) -> list:
    from daemon.runtime.proposals import open_proposals
    from daemon.runtime.source import GitSource, SourceError
    from daemon.shared.paths import specd_home

    repo = getattr(args, "repo", ".")
    try:
        source = GitSource(repo, watched_branch(repo, getattr(args, "branch", None)), specd_home(getattr(args, "home", None)))
    except (SourceError, OSError):  # a remote is listed from the daemon's mirror as last fetched: no network here
        return []
    return open_proposals(source.git_dir, source.branch, args.service)


def _propose(args: argparse.Namespace, home: Path) -> int:
    """`--propose`: the daemon's proposal step, once, against the watched branch's head."""
    from daemon.runtime.proposals import ProposalError, live_logs, propose
    from daemon.runtime.reconcile import load_desired
    from daemon.runtime.source import GitSource, SourceError

    branch = watched_branch(args.repo, args.branch)
    try:
        source = GitSource(args.repo, branch, home)
        source.fetch()
        sha = source.head()
        desired = load_desired(source.checkout(sha), args.env, sha)
    except SourceError as exc:
        print(f"specd ab --propose: {exc}", file=sys.stderr)
        return 2
    doc = desired.composed.by_key().get(f"service/{args.service}")
    if doc is None or doc.spec.promotion.online is None:
        print(f"specd ab --propose: service {args.service!r} has no promotion.online rule on {branch}", file=sys.stderr)
        return 2
    live = live_logs(home, args.service)
    if live is None:
        print(f"specd ab --propose: service {args.service!r} is not deployed (no live routing)", file=sys.stderr)
        return 2
    predictions, feedback, fingerprint, weights = live
    try:
        result = propose(repo=args.repo, branch=branch, env_name=args.env, home=home, service=args.service,
                         spec_path=doc.path, spec=doc.spec, predictions=predictions, feedback=feedback,
                         auto_promote=desired.composed.env.auto_promote, routing_fingerprint=fingerprint, weights=weights)
    except ProposalError as exc:
        print(f"specd ab --propose: {exc}", file=sys.stderr)
        return 1
    print(f"propose: {result.action}" + (f" {result.branch} {result.commit or ''}" if result.branch else ""))
    for reason in result.reasons:
        print(f"  {reason}")
    return 0


def to_json(report: ABReport) -> dict[str, Any]:
    data = asdict(report)
    data["format_version"] = 1
    return data
