"""`specd sync | suspend | resume | history`, and saved plans (`plan -out FILE` → `apply FILE`).

Operating between commits, the way Argo CD and Flux users expect:

- `specd sync table/bronze_orders` — reconcile that resource now, and what follows it, even when it looks
  in sync (new rows landed in an SQL database or an HTTP API: only reading the source can tell). With a
  daemon running, a request file under the state home wakes it (`daemon.runtime.operations`) and the
  command waits for the outcome in the journal; without one, the command runs that cycle itself, under
  the daemon lock.
- `specd suspend/resume RESOURCE` — recorded in the state home; `plan` shows a suspended resource with
  what it would do and apply leaves it alone; `status` says it is suspended.
- `specd history [RESOURCE]` — what happened, from the journal (`events.jsonl`).
- `specd plan -out plan.json` then `specd apply plan.json` — apply exactly that plan, or refuse when the
  world moved in between (another revision, or a live fingerprint or drift reason that changed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SAVED_PLAN_VERSION = 1
EXIT_OK, EXIT_ERROR = 0, 1


def _home_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", default=None, help="state root (default: $SPECD_HOME or ./.specd)")


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_parser(subparsers: Any) -> None:
    from daemon.cli.main import _common, _revision_arg

    raw = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("sync", help="reconcile a resource now (and what follows it), even if it looks in sync",
                              formatter_class=raw, epilog=_examples(
                                  "specd sync table/bronze_orders        # new rows landed upstream: pull them now",
                                  "specd sync model/churn --no-wait      # ask the daemon to retrain, do not wait"))
    _common(p)
    _revision_arg(p)
    p.add_argument("resources", nargs="+", metavar="KIND/NAME", help="resources to reconcile (e.g. table/orders)")
    p.add_argument("--no-wait", action="store_true", help="with a running daemon: only queue the request")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the daemon's outcome (default 600)")
    p.set_defaults(handler=cmd_sync)

    for name, verb in (("suspend", "stop applying changes to"), ("resume", "apply changes again to")):
        p = subparsers.add_parser(name, help=f"{verb} a resource (recorded in the state home, shown in plan and status)",
                                  formatter_class=raw, epilog=_examples(f"specd {name} model/churn"))
        _home_arg(p)
        p.add_argument("resources", nargs="+", metavar="KIND/NAME")
        if name == "suspend":
            p.add_argument("--reason", default="", help="why (shown in status)")
        p.set_defaults(handler=cmd_suspend if name == "suspend" else cmd_resume)

    p = subparsers.add_parser("history", help="what happened, from the journal (newest last)", formatter_class=raw,
                              epilog=_examples("specd history", "specd history model/churn --limit 5 --json"))
    _home_arg(p)
    p.add_argument("resource", nargs="?", metavar="KIND/NAME", help="only events of this resource")
    p.add_argument("--limit", type=int, default=30, help="how many events (default 30; 0: all)")
    p.add_argument("--json", action="store_true", help="one JSON event per line")
    p.set_defaults(handler=cmd_history)


def _check_keys(keys: list[str]) -> list[str]:
    from daemon.core.kinds import KINDS

    kinds = {k.name for k in KINDS}
    bad = [k for k in keys if "/" not in k or k.split("/", 1)[0] not in kinds]
    if bad:
        raise SystemExit(f"error: {', '.join(bad)}: name resources as KIND/NAME with KIND one of {', '.join(sorted(kinds))}")
    return keys


# -- suspend / resume / history --------------------------------------------------------------------------
def cmd_suspend(args) -> int:
    from daemon.runtime import operations
    from daemon.runtime.journal import Journal
    from daemon.shared.paths import journal_path, specd_home

    home = specd_home(args.home)
    for key in _check_keys(args.resources):
        fresh = operations.suspend(home, key, args.reason)
        if fresh:
            Journal(journal_path(home)).append("Suspended", None, resource=key, message=args.reason)
        print(f"{key}: {'suspended' if fresh else 'already suspended'}")
    return EXIT_OK


def cmd_resume(args) -> int:
    from daemon.runtime import operations
    from daemon.runtime.journal import Journal
    from daemon.shared.paths import journal_path, specd_home

    home = specd_home(args.home)
    for key in _check_keys(args.resources):
        was = operations.resume(home, key)
        if was:
            Journal(journal_path(home)).append("Resumed", None, resource=key)
            operations.request_sync(home, [])  # wake a running daemon: the held changes apply now
        print(f"{key}: {'resumed' if was else 'was not suspended'}")
    return EXIT_OK


def format_event(event: Mapping[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.get("ts", 0)))
    revision = (event.get("revision") or "-")[:12]
    what = " ".join(str(x) for x in (event.get("op"), event.get("resource")) if x)
    message = event.get("message") or (f"{len(event['actions'])} action(s)" if isinstance(event.get("actions"), list) else "")
    if isinstance(event.get("errors"), list):
        message = "; ".join(event["errors"][:2])
    extra = f" ({event['duration_s']}s)" if event.get("duration_s") is not None else ""
    return f"{when}  {revision:<12}  {event.get('type', ''):<18} {what}{': ' if what and message else ''}{message}{extra}"


def cmd_history(args) -> int:
    from daemon.runtime.journal import Journal
    from daemon.shared.paths import journal_path, specd_home

    events = Journal(journal_path(specd_home(args.home))).read()
    if args.resource:
        key = args.resource
        events = [e for e in events if e.get("resource") == key or key in (e.get("resources") or ())
                  or any(str(a).endswith(f" {key}") for a in (e.get("actions") if isinstance(e.get("actions"), list) else ()))]
    if args.limit:
        events = events[-args.limit:]
    for event in events:
        print(json.dumps(event, sort_keys=True, default=str) if args.json else format_event(event))
    if not events and not args.json:
        print("no events" + (f" for {args.resource}" if args.resource else ""))
    return EXIT_OK


# -- sync ------------------------------------------------------------------------------------------------
def daemon_running(home: Path) -> bool:
    from daemon.runtime.daemon import DaemonLock
    from daemon.shared.paths import lock_path

    lock = DaemonLock(lock_path(home))
    try:
        lock.acquire()
    except Exception:
        return True
    lock.release()
    return False


def cmd_sync(args) -> int:
    from daemon.runtime import operations
    from daemon.shared.paths import specd_home

    home = specd_home(args.home)
    keys = _check_keys(args.resources)
    if daemon_running(home):
        asked = time.time()
        operations.request_sync(home, keys)
        print(f"sync of {', '.join(keys)} requested from the running daemon")
        if args.no_wait:
            return EXIT_OK
        return _wait_for_daemon(home, keys, asked, args.timeout)
    return _sync_here(args, home, keys)


def _wait_for_daemon(home: Path, keys: list[str], since: float, timeout: float) -> int:
    from daemon.runtime.journal import Journal
    from daemon.shared.paths import journal_path

    journal = Journal(journal_path(home))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = [e for e in journal.read(2000) if e.get("ts", 0) >= since]
        done = next((e for e in events if e.get("type") == "SyncFinished" and set(keys) <= set(e.get("resources", ()))), None)
        if done:
            for event in events:
                if event.get("type") in ("ActionSucceeded", "ActionFailed", "ActionBlocked"):
                    print(format_event(event))
            print(done.get("message", "done"))
            return EXIT_OK if done.get("ok") else EXIT_ERROR
        time.sleep(0.3)
    print(f"error: the daemon did not report the sync within {timeout:.0f}s (see specd history)", file=sys.stderr)
    return EXIT_ERROR


def scoped(the_plan: Any, graph: Any, keys: list[str]) -> Any:
    """The plan cut down to `keys` and the resources that follow them."""
    from dataclasses import replace

    from daemon.core.plan import CHANGING, Op

    scope = set(keys)
    for key in keys:
        scope |= graph.dependents(key)
    actions = tuple(a if a.key in scope or a.op not in CHANGING else replace(a, op=Op.UNCHANGED, reason="not in the sync's scope")
                    for a in the_plan.actions)
    return replace(the_plan, actions=actions)


def _sync_here(args, home: Path, keys: list[str]) -> int:
    import os

    from daemon.cli.main import _desired
    from daemon.core.executor import SUCCEEDED
    from daemon.runtime.daemon import DaemonLock
    from daemon.runtime.journal import Journal
    from daemon.runtime.reconcile import apply, check, context_for, make_adapters, observe, plan
    from daemon.shared.paths import bentoml_home, journal_path, lock_path

    lock = DaemonLock(lock_path(home))
    lock.acquire()  # a daemon starting meanwhile waits for us (AlreadyRunning) instead of racing
    try:
        os.environ.setdefault("BENTOML_HOME", str(bentoml_home(home)))
        desired = _desired(args, args.rev)
        unknown = [k for k in keys if k not in desired.graph.by_key()]
        if unknown:
            print(f"error: no such resource in the specs: {', '.join(unknown)}", file=sys.stderr)
            return EXIT_ERROR
        adapters = make_adapters(context_for(desired, home, progress=lambda m: print(f"  … {m}", file=sys.stderr)))
        check(adapters, desired.graph)
        the_plan = scoped(plan(desired, observe(adapters, desired.graph), adapters, forced=keys), desired.graph, keys)
        print(the_plan.to_text())
        journal = Journal(journal_path(home))
        results = apply(the_plan, desired, adapters, use_prefect=False)
        for result in results:
            kind = "ActionSucceeded" if result.status == SUCCEEDED else "ActionFailed"
            journal.append(kind, desired.revision, resource=result.key, op=result.op, message=result.message,
                           duration_s=round(result.duration_s, 3), via="specd sync")
            print(f"{result.op} {result.key}: {result.status} {result.message}")
        ok = all(r.status == SUCCEEDED for r in results)
        journal.append("SyncFinished", desired.revision, resources=keys, ok=ok, via="specd sync",
                       message=f"sync of {', '.join(keys)}: {len(results)} action(s)" + ("" if ok else ", some failed"))
        return EXIT_OK if ok else EXIT_ERROR
    finally:
        lock.release()


# -- saved plans -----------------------------------------------------------------------------------------
def save_plan(path: Path, the_plan: Any, desired: Any, observed: Mapping[str, Any]) -> None:
    """Write the plan with what it was computed from: the revision, every desired fingerprint and every
    live fingerprint and drift reason. `apply FILE` refuses when any of them moved."""
    data = {
        "saved_plan_version": SAVED_PLAN_VERSION,
        "created_at": time.time(),
        "plan": the_plan.to_json(),
        "desired": {r.key: r.fingerprint for r in desired.graph.resources},
        "observed": {k: live_identity(o) for k, o in sorted(observed.items())},
    }
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))


def live_identity(observed: Any) -> dict[str, Any]:
    """What a saved plan pins of one live resource: its fingerprint, drift reasons and data identity
    (a table's Delta version and data id, a model's champion), so new rows make a saved plan stale too."""
    details = observed.details or {}
    return json.loads(json.dumps({"fingerprint": observed.fingerprint, "exists": observed.exists, "drift": list(observed.drift),
                                  **{k: details.get(k) for k in ("version", "data_id", "champion") if k in details}}, default=str))


def load_plan(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {path}: not a saved plan ({exc})") from None
    if not isinstance(data, dict) or data.get("saved_plan_version") != SAVED_PLAN_VERSION:
        raise SystemExit(f"error: {path}: not a saved plan of this specd version (write it with `specd plan -out FILE`)")
    return data


def world_moved(saved: Mapping[str, Any], desired: Any, observed: Mapping[str, Any]) -> list[str]:
    """Why the saved plan no longer describes what apply would do (empty: it still does)."""
    reasons = []
    if saved["plan"]["revision"] != desired.revision:
        reasons.append(f"revision is now {desired.revision[:12]}, the plan is for {saved['plan']['revision'][:12]}")
    now_desired = {r.key: r.fingerprint for r in desired.graph.resources}
    for key in sorted(set(now_desired) | set(saved["desired"])):
        if now_desired.get(key) != saved["desired"].get(key):
            reasons.append(f"{key}: desired spec changed")
    for key in sorted(set(observed) | set(saved["observed"])):
        live = observed.get(key)
        now = live_identity(live) if live is not None else None
        if now != saved["observed"].get(key):
            reasons.append(f"{key}: live state changed since the plan")
    return reasons


def plan_from_json(data: Mapping[str, Any]) -> Any:
    from daemon.core.plan import Action, Op, Plan

    fields = Action.__dataclass_fields__
    actions = []
    for item in data["actions"]:
        values = {k: v for k, v in item.items() if k in fields}
        values["op"] = Op(values["op"])
        values["depends_on"] = tuple(values.get("depends_on") or ())
        values["follows"] = tuple(values.get("follows") or ())
        actions.append(Action(**values))
    changes = {a["kind"] + "/" + a["name"]: tuple(a.get("change_lines") or ()) for a in data["actions"] if a.get("change_lines")}
    return Plan(data["revision"], data["env"], tuple(actions), data.get("base_revision"), changes)
