"""`specd erase --subject COLUMN=VALUE`: the right to erasure, across every table and prediction log.

The composed graph says which tables exist, how each keeps the column (clear, hashed, encrypted, masked)
and which tables read which (lineage); the services' live routing files say where their prediction and
feedback logs are. The engine (flows.tables.erase) plans the deletes, which are printed; `--dry-run`
stops there. Otherwise, under the daemon's lock (one writer per state home), each table is rewritten
without the subject's rows in one commit recording the request — a salted hash of the value, never the
value — and vacuumed (`--vacuum-now`: at once, log entries included; else at the table's retention).
Models whose releases were trained on an erased table version are listed, not retrained. The value is
never printed or logged: the report names it by its salted hash.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

_SALT_SECRET = "ERASURE_SALT"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "erase", help="right to erasure: delete one subject's rows from every table and prediction log",
        description="Examples:\n  specd erase --subject customer_email=ann@example.com --dry-run\n"
                    "  specd erase --subject customer_email=ann@example.com --vacuum-now",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subject", required=True, metavar="COLUMN=VALUE",
                        help="the subject: a column and its value (matched in clear, hashed or encrypted)")
    parser.add_argument("--dry-run", action="store_true", help="print the planned deletes and change nothing")
    parser.add_argument("--vacuum-now", action="store_true",
                        help="vacuum at once (retention 0) and expire the log entries of the removed files")
    parser.add_argument("--json", action="store_true", help="print the plan/report as JSON")
    for flag, default, text in (("--repo", ".", "spec repository (default: current directory)"),
                                ("--env", "dev", "environment overlay (default: dev)"),
                                ("--home", None, "state home (default $SPECD_HOME or ./.specd)")):
        if not any(flag in a.option_strings for a in parser._actions):
            parser.add_argument(flag, default=default, help=text)
    parser.set_defaults(handler=run, override=[])
    return parser


def _salt() -> tuple[bytes, str]:
    from daemon.shared.secrets import resolve_secret

    try:
        return resolve_secret(f"secret:{_SALT_SECRET}").encode(), f"secret:{_SALT_SECRET}"
    except Exception:
        from flows.tables.erase import new_salt

        return new_salt(), "random (printed once to the operator)"


def targets_for(graph: Any, storage_root: str, column: str, resolve: Any = None,
                storage_options: dict[str, str] | None = None) -> list[Any]:
    """One Target per table and quarantine table of the graph, with how it keeps `column`."""
    from flows.tables import quarantine_name, table_uri
    from flows.tables.erase import Target

    if resolve is None:
        from daemon.shared.secrets import resolve_secret as resolve
    out = []
    for resource in graph.resources:
        if resource.kind != "table":
            continue
        spec = resource.spec
        rule = spec.privacy.columns.get(column) if spec.privacy is not None else None
        mode = getattr(rule, "mode", None)
        key = resolve(rule.key).encode() if mode in ("hash", "encrypt") else None
        for name in (resource.name, quarantine_name(resource.name)):
            out.append(Target(name, table_uri(storage_root, name), mode, key, retention_hours=spec.retention.vacuum_hours,
                              storage_options=storage_options or None))
    return out


def log_targets(graph: Any, home: Path) -> list[tuple[Any, Any]]:
    """(predictions, feedback) Targets of every service with a live routing file: those of the graph and
    any other left under the state home (a removed service's logs still hold the subject)."""
    from bentos.routing import read_routing
    from daemon.adapters.services.supervisor import Supervisor
    from daemon.shared.storage_uri import log_options
    from flows.tables.erase import Target

    supervisor = Supervisor(home)
    names = {r.name for r in graph.resources if r.kind == "service"}
    root = supervisor.routing_file("_").parent.parent
    if root.is_dir():
        names |= {p.parent.name for p in root.glob(f"*/{supervisor.routing_file('_').name}")}
    out = []
    for name in sorted(names):
        try:
            settings = read_routing(supervisor.routing_file(name)).settings["prediction_log"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        options = log_options(settings, home)
        out.append((Target(f"{name}:predictions", settings["predictions_uri"], kind="predictions", storage_options=options or None),
                    Target(f"{name}:feedback", settings["feedback_uri"], kind="feedback", storage_options=options or None)))
    return out


def downstream(graph: Any, names: set[str]) -> list[str]:
    """Tables that read (transitively) a table the subject was found in: they rebuild on the next sync."""
    reads = {r.name: set(getattr(r.spec.source, "inputs", []) or []) for r in graph.resources if r.kind == "table"}
    found: set[str] = set()
    frontier = set(names)
    while frontier:
        frontier = {t for t, inputs in reads.items() if inputs & frontier and t not in found and t not in names}
        found |= frontier
    return sorted(found)


def trained_on(erased: dict[str, int], store: Any = None) -> list[str]:
    """Model releases whose training data was an erased table at a version before its erasure."""
    from flows.training.registry import list_models, list_releases

    lines = []
    for model in list_models(store):
        for release in list_releases(model, store):
            data = release.data or {}
            table, version = data.get("table"), data.get("delta_version")
            if table in erased and version is not None and int(version) < erased[table]:
                lines.append(f"{model} release {release.fingerprint[:12]} (champion {release.champion}): "
                             f"trained on {table} v{version}")
    return lines


def run(args: argparse.Namespace) -> int:
    from daemon.cli.main import _desired
    from daemon.runtime.lock import LockHeld, acquire_for_apply
    from daemon.runtime.reconcile import context_for
    from daemon.shared.paths import specd_home
    from flows.tables.erase import apply_erasure, plan_erasure, request_record

    column, sep, value = args.subject.partition("=")
    if not sep or not column.strip() or not value:
        print("specd erase: --subject: expected COLUMN=VALUE", file=sys.stderr)
        return 2
    column = column.strip()
    from daemon.shared import scrub

    scrub.register(value)  # the subject's value never reaches a log line or an error message
    home = specd_home(args.home)
    desired = _desired(args, None)
    ctx = context_for(desired, home)
    from daemon.shared.storage_uri import client_options

    tables = targets_for(desired.graph, ctx.storage_root, column, storage_options=client_options(ctx.env.storage.storage_options, ctx.env.tls, ctx.home))
    logs = log_targets(desired.graph, home)
    steps = plan_erasure(column, value, tables, logs)
    salt, salt_source = _salt()
    request = request_record(column, value, salt, salt_source)
    found = {s.target for s in steps if s.rows}
    rebuilds = downstream(desired.graph, found)
    _print_plan(steps, request, rebuilds, args)
    if args.dry_run or not found:
        if args.json:
            print(json.dumps({"request": request, "dry_run": args.dry_run, "plan": [
                {"table": s.target, "uri": s.uri, "rows": s.rows, "how": s.how, "note": s.note} for s in steps],
                "downstream_rebuilds": rebuilds}, indent=2))
        return 0
    try:
        lock = acquire_for_apply(home)
    except LockHeld as exc:
        print(f"error: specd erase refused: {exc}", file=sys.stderr)
        return 1
    try:
        targets = {t.name: t for t in tables} | {t.name: t for pair in logs for t in pair}
        apply_erasure(steps, targets, request, vacuum_now=args.vacuum_now)
    finally:
        lock.release()
    erased = {s.target: int(s.version or 0) + 1 for s in steps if s.erased_version is not None}
    models = trained_on(erased)
    _print_report(steps, request, models, salt, salt_source, args)
    return 0


def _print_plan(steps: list[Any], request: dict, rebuilds: list[str], args: argparse.Namespace) -> None:
    if args.json:
        return
    print(f"erasure {request['request_id']}: {request['column']} = <subject sha256 {request['subject_sha256'][:16]}…>")
    for step in steps:
        if step.rows:
            print(f"  delete {step.rows} row(s) from {step.target} (v{step.version}; {step.how})")
        elif step.note and step.note != "not built" and not step.note.startswith("no column"):
            print(f"  cannot match in {step.target}: {step.note}")
    for name in rebuilds:
        print(f"  {name} reads an erased table: it rebuilds on the next sync")
    if not any(s.rows for s in steps):
        print("  no rows hold this subject")
    if args.dry_run:
        print("dry run: nothing changed")


def _print_report(steps: list[Any], request: dict, models: list[str], salt: bytes, salt_source: str, args: argparse.Namespace) -> None:
    done = [{"table": s.target, "uri": s.uri, "rows": s.rows, "version": s.erased_version, "files_removed": s.removed_files}
            for s in steps if s.erased_version is not None]
    if args.json:
        print(json.dumps({"request": request, "erased": done, "models_trained_on_erased_rows": models}, indent=2))
        return
    for item in done:
        print(f"erased {item['rows']} row(s) from {item['table']} (now v{item['version']}, {item['files_removed']} file(s) vacuumed)")
    if not args.vacuum_now:
        print("old files are vacuumed after each table's retention (--vacuum-now removes them at once)")
    for line in models:
        print(f"model trained on erased rows: {line} (retraining is the policy's decision)")
    if salt_source.startswith("random"):
        print(f"salt of the subject hash (keep it with the request; not stored): {salt.hex()}")
