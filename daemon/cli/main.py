"""`specd` command line: validate, plan, apply, run (the daemon), status — plus models and ab.

Fast paths stay light: `validate` and `plan` import only the pure core, pydantic/OmegaConf and the
adapters' observers — never torch, bentoml or prefect. Exit codes: 0 success (no changes), 1 error,
2 changes present (`plan --detailed-exitcode`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from daemon import __version__
from daemon.cli import importgc  # first: the collector is paused while the CLI imports
from daemon.core.compose_cache import ComposeCache
from daemon.core.executor import SUCCEEDED
from daemon.core.status import resource_statuses
from daemon.runtime.reconcile import (
    check,
    context_for,
    load_desired,
    make_adapters,
    observe,
    plan,
    simulated_observation,
)
from daemon.shared.errors import SpecErrors
from daemon.shared.paths import bentoml_home, journal_path, lock_path, specd_home, status_path

if TYPE_CHECKING:  # bound lazily at run time: see _LAZY
    from daemon.runtime.cycle import CycleState, run_cycle, status_document
    from daemon.runtime.daemon import AlreadyRunning, Daemon, DaemonLock
    from daemon.runtime.journal import EventType, Journal
    from daemon.runtime.prefect_bootstrap import bootstrap_prefect
    from daemon.runtime.source import GitSource, is_remote

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
# What only apply, run and status use, imported when first used (~50 ms off every `specd plan`): the
# module attribute (`daemon.cli.main.run_cycle`, patchable by tests) is bound on first access or `_need`.
_LAZY = {
    "CycleState": "daemon.runtime.cycle", "run_cycle": "daemon.runtime.cycle", "status_document": "daemon.runtime.cycle",
    "AlreadyRunning": "daemon.runtime.daemon", "Daemon": "daemon.runtime.daemon", "DaemonLock": "daemon.runtime.daemon",
    "EventType": "daemon.runtime.journal", "Journal": "daemon.runtime.journal",
    "bootstrap_prefect": "daemon.runtime.prefect_bootstrap",
    "GitSource": "daemon.runtime.source", "is_remote": "daemon.runtime.source",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(module), name)
    return value


def _need(*names: str) -> None:
    """Bind these lazy names as module globals (a value a test patched in stays)."""
    for name in names:
        if name not in globals():
            __getattr__(name)


WORKTREE = "worktree"
# Subcommands contributed by capabilities: module with add_parser(subparsers) and run(args) -> int.
EXTENSIONS = ("daemon.cli.models", "daemon.cli.ab", "daemon.cli.ops", "daemon.cli.erase", "daemon.cli.drift", "daemon.cli.render", "daemon.cli.worker")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=".", help="git repository: a local path or a remote URL (default: current directory)")
    parser.add_argument("--env", default="dev", help="environment overlay in environments/ (default: dev)")
    parser.add_argument("--home", default=None, help="state root (default: $SPECD_HOME or ./.specd)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE", help="Hydra override, e.g. tables.orders.write.mode=merge or env.daemon.poll_interval_s=5 (repeatable)")


def _revision_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rev", default=None, help="a git revision to read instead of the working tree")


class _CoreOnly(Exception):
    """A parser without the extension subcommands was asked for help or hit an error: see build_parser."""


class _CoreParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise _CoreOnly(message)

    def print_help(self, file=None) -> None:
        raise _CoreOnly("help")

    def print_usage(self, file=None) -> None:
        raise _CoreOnly("usage")


def build_parser(extensions: bool = True) -> argparse.ArgumentParser:
    """The whole parser. Without `extensions`, only the core commands' (importing the extension modules
    for their subcommands is ~15 ms of a warm `specd plan`), and a parser that prints nothing itself: any
    help or error raises `_CoreOnly` and main parses again with the whole parser, so every text is the same."""
    parser = (argparse.ArgumentParser if extensions else _CoreParser)(prog="specd", description="GitOps control plane for the data architecture of ML systems.")
    parser.add_argument("--version", action="version", version=f"specd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check every spec; list every error as file:line: field: message")
    _common(p)
    _revision_arg(p)

    p = sub.add_parser("plan", help="show what apply would change (pure: writes nothing)")
    _common(p)
    _revision_arg(p)
    p.add_argument("--base", default=None, metavar="REV", help="plan against this revision as if it were applied (for pull requests); shows property diffs")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (same as --format json)")
    p.add_argument("--format", choices=("text", "json", "markdown"), default=None,
                   help="text (default), json, or markdown: a pull-request comment (summary, warnings, approvals, estimates, collapsible per kind)")
    p.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when there are changes, 0 when none, 1 on error")
    p.add_argument("--all", action="store_true", help="also list unchanged resources")
    p.add_argument("-out", "--out", default=None, metavar="FILE", help="save the plan; `specd apply FILE` applies exactly it (or refuses if the world moved)")

    p = sub.add_parser("apply", help="apply the specs once (working tree or --rev) through Prefect; refused while a daemon runs on the same home")
    _common(p)
    _revision_arg(p)
    p.add_argument("--no-prefect", action="store_true", help="run the actions in-process instead of as a Prefect flow run")
    p.add_argument("plan_file", nargs="?", default=None, metavar="FILE", help="a plan saved with `specd plan -out FILE`: apply exactly it")

    p = sub.add_parser("run", help="run the daemon: follow a branch and reconcile continuously")
    _common(p)
    p.add_argument("--branch", default=None, help="branch to follow (default: the repository's current branch, or main)")
    p.add_argument("--metrics-port", type=int, default=None, help="override env daemon.metrics_port (0: any free port)")
    p.add_argument("--no-prefect", action="store_true", help="apply in-process instead of through Prefect (no Prefect server)")
    p.add_argument("--keep-services", action="store_true", help="leave services running on stop; the next daemon adopts them (no downtime across daemon restarts)")

    p = sub.add_parser("status", help="per-resource sync and health, and the applied revision")
    _common(p)
    p.add_argument("--json", action="store_true", help="print status as JSON")
    p.add_argument("--watch", nargs="?", const=2.0, type=float, default=None, metavar="SECONDS", help="redraw every SECONDS (default 2) until Ctrl-C")

    for name in EXTENSIONS if extensions else ():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_parser(sub)
    return parser


# -- revision loading --------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def _worktree_revision(repo: Path) -> str:
    try:
        head = _git(repo, "rev-parse", "HEAD")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return WORKTREE
    dirty = _git(repo, "status", "--porcelain", "--", "specs", "environments")
    return f"{head}-dirty" if dirty else head


def _desired(args, rev: str | None):
    repo = args.repo
    home = specd_home(args.home)
    cache = ComposeCache(home / "cache" / f"compose-{args.env}.bin") if home.exists() else None
    # The environment rule: compose with the `${oc.env}` values and env.* overrides the daemon applied
    # (recorded in the state home), never with this shell's; a difference is a plan warning.
    from daemon.runtime.operations import pin_to_daemon

    overrides, args.env_warnings = pin_to_daemon(home, args.env, list(args.override))
    try:
        if rev is None:
            path = Path(repo).absolute()
            return load_desired(path, args.env, _worktree_revision(path), overrides, cache)
        _need("GitSource")
        source = GitSource(repo, "HEAD", home)
        source.fetch()
        sha = source.resolve(rev)
        return load_desired(source.checkout(sha), args.env, sha, overrides, cache)
    finally:
        if cache is not None:
            cache.save()


def _print_errors(exc: SpecErrors) -> None:
    from daemon.shared.scrub import scrub

    print(f"{len(exc.issues)} error(s):", file=sys.stderr)
    for issue in exc.issues:
        print(f"  {scrub(str(issue))}", file=sys.stderr)


def _print_warnings(adapters, graph) -> None:
    """Findings that do not reject the revision here (privacy by default outside require_declared)."""
    from daemon.shared.scrub import scrub

    for kind, adapter in adapters.items():
        if hasattr(adapter, "warnings"):
            for issue in adapter.warnings([r for r in graph.resources if r.kind == kind]):
                print(f"warning: {scrub(str(issue))}", file=sys.stderr)


# -- commands ----------------------------------------------------------------------------------------
def cmd_validate(args) -> int:
    desired = _desired(args, args.rev)
    adapters = make_adapters(context_for(desired, specd_home(args.home)))
    check(adapters, desired.graph)
    _print_warnings(adapters, desired.graph)
    counts: dict[str, int] = {}
    for resource in desired.graph.resources:
        counts[resource.kind] = counts.get(resource.kind, 0) + 1
    summary = ", ".join(f"{n} {k}{'s' if n != 1 and not k.endswith('s') else ''}" for k, n in sorted(counts.items())) or "no resources"
    print(f"valid: {summary} (env {args.env})")
    return EXIT_OK


def cmd_plan(args) -> int:
    desired = _desired(args, args.rev)
    home = specd_home(args.home)
    adapters = make_adapters(context_for(desired, home))
    check(adapters, desired.graph)
    base = None
    if args.base:
        base = _desired(args, args.base)
        live = observe(adapters, desired.graph) if home.exists() else None
        observed = simulated_observation(base, live)
    else:
        observed = observe(adapters, desired.graph)
    result = plan(desired, observed, adapters, base, warnings=getattr(args, "env_warnings", ()))
    if getattr(args, "out", None):
        from daemon.cli.ops import save_plan

        save_plan(Path(args.out), result, desired, observed)
        print(f"saved the plan to {args.out}; apply exactly it with: specd apply {args.out}", file=sys.stderr)
    from daemon.core.owners import approvals_json, approvals_text, owners_by_path, required_approvals

    approvals = required_approvals(result, {r.key: r.path for r in desired.graph.resources}, owners_by_path(desired.composed.docs),
                                   dict(desired.composed.env.approvals))  # flat: its model_dump(), without building a serializer
    form = args.format or ("json" if args.json else "text")
    if form == "json":
        print(json.dumps({**result.to_json(), "approvals": approvals_json(approvals)}, indent=2))
    elif form == "markdown":
        from daemon.core.plan_markdown import to_markdown

        print(to_markdown(result, approvals, show_unchanged=args.all), end="")
    else:
        print("\n".join([result.to_text(show_unchanged=args.all)] + ([""] + approvals_text(approvals, result.env) if approvals else [])))
    return EXIT_CHANGES if (args.detailed_exitcode and result.has_changes) else EXIT_OK


def _refuse_insecure_state(home: Path) -> str | None:
    """specd run/apply refuse to start on a secrets directory others can read; the home is made 0700."""
    from daemon.shared.paths import InsecureSecrets, check_secrets_dir, prepare_home

    try:
        check_secrets_dir()
    except InsecureSecrets as exc:
        return str(exc)
    prepare_home(home)
    return None


def cmd_apply(args) -> int:
    from daemon.runtime.lock import LockHeld, acquire_for_apply

    home = specd_home(args.home)
    refused = _refuse_insecure_state(home)
    if refused:
        print(f"error: specd apply refused: {refused}", file=sys.stderr)
        return EXIT_ERROR
    try:
        lock = acquire_for_apply(home)  # never beside a running daemon: it owns the home and its Prefect server
    except LockHeld as exc:
        print(f"error: specd apply refused: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return _apply_locked(args, home)
    finally:
        lock.release()


def _apply_locked(args, home: Path) -> int:
    os.environ.setdefault("BENTOML_HOME", str(bentoml_home(home)))
    os.environ["SPECD_REPO_URL"] = (args.repo if "://" in args.repo else str(Path(args.repo).resolve()))  # work-pool workers clone from here
    saved = None
    if args.plan_file:
        from daemon.cli.ops import load_plan

        saved = load_plan(Path(args.plan_file))
        if args.rev is None and not str(saved["plan"]["revision"]).endswith("-dirty") and saved["plan"]["revision"] != WORKTREE:
            args.rev = saved["plan"]["revision"]
    _need("CycleState", "run_cycle", "Journal", "bootstrap_prefect")
    desired = _desired(args, args.rev)
    use_prefect = not args.no_prefect
    server = None
    adapters = make_adapters(context_for(desired, home, progress=lambda m: print(f"  … {m}", file=sys.stderr), prefect=use_prefect))
    if saved is not None:  # apply exactly that plan: refuse when the world moved, else this cycle plans the same
        from daemon.cli.ops import world_moved

        check(adapters, desired.graph)
        moved = world_moved(saved, desired, observe(adapters, desired.graph))
        if moved:
            print(f"error: refusing to apply {args.plan_file}: the world moved since it was planned:", file=sys.stderr)
            for reason in moved[:20]:
                print(f"  {reason}", file=sys.stderr)
            return EXIT_ERROR
    done = []
    total = 0

    def show_plan(the_plan) -> None:
        nonlocal total, server
        total = len(the_plan.changes)
        print(the_plan.to_text(), flush=True)
        if use_prefect and the_plan.has_changes:  # a server only when there is something to run
            server = bootstrap_prefect(home, desired.composed.env)

    def progress(result) -> None:
        done.append(result)
        mark = "ok" if result.status == SUCCEEDED else result.status.upper()
        print(f"[{len(done)}/{total}] {result.op} {result.key}: {mark} ({result.duration_s:.1f}s) {result.message}", file=sys.stderr, flush=True)

    try:  # the daemon's own cycle, once: the same plan, journal events and statuses (daemon.runtime.cycle)
        check(adapters, desired.graph)
        outcome = run_cycle(desired, adapters, CycleState(), Journal(journal_path(home)), use_prefect=use_prefect,
                            on_result=progress, on_plan=show_plan, via="specd apply")
    finally:
        if server:
            server.stop()
    if not outcome.results and not outcome.held:
        return EXIT_OK
    failed = [r for r in outcome.results.values() if r.status != SUCCEEDED]
    print(f"Applied {total - len(failed)}/{total} action(s)" + (f"; {len(failed)} failed or blocked." if failed else "."))
    return EXIT_ERROR if failed else EXIT_OK


def cmd_run(args) -> int:
    refused = _refuse_insecure_state(specd_home(args.home))
    if refused:
        print(f"error: specd run refused: {refused}", file=sys.stderr)
        return EXIT_ERROR
    _need("is_remote", "Daemon", "AlreadyRunning")
    branch = args.branch
    if branch is None:
        branch = "main"
        if not is_remote(args.repo):
            try:
                branch = _git(Path(args.repo), "symbolic-ref", "--short", "HEAD")
            except subprocess.CalledProcessError:
                pass
    overrides = list(args.override)
    if args.metrics_port:  # the generated Prometheus scrape config must point at the port actually served
        overrides.append(f"env.daemon.metrics_port={args.metrics_port}")
    daemon = Daemon(specd_home(args.home), args.repo, branch, args.env, tuple(overrides), metrics_port=args.metrics_port, use_prefect=not args.no_prefect, keep_services=args.keep_services)
    try:
        return daemon.run()
    except AlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def cmd_status(args) -> int:
    if getattr(args, "watch", None):
        from daemon.cli.status_watch import watch

        return watch(lambda: _status_once(args), args.watch)
    return _status_once(args)


def _status_once(args) -> int:
    _need("DaemonLock", "Journal", "EventType", "CycleState", "status_document")
    home = specd_home(args.home)
    lock = DaemonLock(lock_path(home))
    try:
        lock.acquire()
        running = False
        lock.release()
    except Exception:
        running = True
    data = None
    if running:
        from daemon.shared.corrupt import CorruptState
        from daemon.shared.corrupt import read_json as read_state

        try:
            data = read_state(status_path(home))
        except CorruptState as exc:  # torn or garbled: observe the live systems instead
            print(f"warning: {exc}; reading the live state instead", file=sys.stderr)
        data = data if isinstance(data, dict) else None
    if data is not None:
        data["daemon"] = "running"
    else:  # no daemon (or no readable status file): observe now, with the applied revision and rejection from the journal
        desired = _desired(args, None)
        observed = observe(make_adapters(context_for(desired, home)), desired.graph)
        journal = Journal(journal_path(home))
        succeeded = journal.last(EventType.RECONCILE_SUCCEEDED)
        rejected = journal.last(EventType.REVISION_REJECTED)
        state = CycleState(desired_revision=desired.revision, applied_revision=succeeded["revision"] if succeeded else None,
                           statuses={s.key: s for s in resource_statuses(desired.graph, observed, desired.revision)})
        data = status_document(state, rejected=rejected if rejected and (not succeeded or rejected["ts"] > succeeded["ts"]) else None,
                               daemon="running" if running else "stopped")
    data["open_proposals"] = _open_proposals(args)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return EXIT_OK
    print(f"daemon: {data['daemon']}   applied: {(data.get('revision') or '-')[:12]}   desired: {(data.get('desired_revision') or '-')[:12]}")
    if data.get("rejected"):
        print(f"rejected revision {data['rejected']['revision'][:12]}:")
        for error in data["rejected"].get("errors", []):
            print(f"  {error}")
    from daemon.cli.status_watch import last_sync_ages
    from daemon.runtime.operations import suspended

    held = suspended(home)
    ages = last_sync_ages(home, data)
    rows = [(f"{r['kind']}/{r['name']}", r["sync"], r["health"], ages.get(f"{r['kind']}/{r['name']}", "-"),
             ("suspended; " if f"{r['kind']}/{r['name']}" in held else "") + r["message"]) for r in data["resources"]]
    width = max((len(r[0]) for r in rows), default=8)
    print(f"{'RESOURCE'.ljust(width)}  {'SYNC':<10}  {'HEALTH':<11}  {'LAST SYNC':<9}  MESSAGE")
    for key, sync, health, age, message in rows:
        print(f"{key.ljust(width)}  {sync:<10}  {health:<11}  {age:<9}  {message}")
    for proposal in data.get("open_proposals", []):
        print(f"open proposal: {proposal['branch']} {proposal['commit'][:12]} {proposal['subject']}")
    return EXIT_OK


def _open_proposals(args) -> list[dict]:
    """Online-promotion proposal branches not merged into the watched branch (daemon/runtime/proposals.py)."""
    from dataclasses import asdict

    from daemon.cli.ab import watched_branch
    from daemon.runtime.proposals import open_proposals
    from daemon.runtime.source import GitSource, SourceError

    try:
        source = GitSource(args.repo, watched_branch(args.repo, getattr(args, "branch", None)), specd_home(args.home))
    except (SourceError, OSError):  # a remote is listed from the daemon's mirror as last fetched: no network here
        return []
    return [asdict(p) for p in open_proposals(source.git_dir, source.branch)]


SHORT_LIVED = ("validate", "plan")  # one pass over the specs, then exit


def _tune_gc() -> None:
    """A short-lived pass over every spec allocates ~10⁶ containers and frees almost none as cycles:
    CPython's default collector thresholds (700, 10, 10) walk them again and again (0.3 s of a cold
    `specd plan` of 1,000 specs). The imported modules are frozen out of its way and collections made
    rarer; the process exits soon anyway. Not for `specd run`, which lives long."""
    import gc

    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _exit_lean() -> None:
    """Before a short-lived command's process exits: CPython's shutdown runs one full collection over
    every object still alive (the compose cache, the graph: ~10⁶ containers, ~15 ms of a second
    `specd plan` of 1,000 specs) although none is garbage; frozen, they are skipped. Only when main()
    runs as the program (argv from sys.argv), never for a caller that goes on in the same process."""
    import gc

    gc.freeze()


COMMANDS = {"validate": cmd_validate, "plan": cmd_plan, "apply": cmd_apply, "run": cmd_run, "status": cmd_status}


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    tuned = next((w for w in words if not w.startswith("-")), None) in SHORT_LIVED  # the command, before the
    if tuned:  # parser imports the extensions: their imports are as long-lived as the CLI's own
        _tune_gc()
    try:
        args = build_parser(extensions=not tuned).parse_args(argv)
    except _CoreOnly:
        args = build_parser().parse_args(argv)
    if args.command in SHORT_LIVED and not tuned:
        _tune_gc()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from daemon.shared import scrub

    scrub.install()  # every log line of the CLI and the daemon: no secret value specd resolved
    for chatty in ("httpx", "httpcore", "urllib3"):  # one line per Prefect API call otherwise
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    handler = COMMANDS.get(args.command) or getattr(args, "handler", None)
    started = time.monotonic()
    try:
        return handler(args)
    except SpecErrors as exc:
        _print_errors(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `specd status | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if args.verbose:
            raise
        from daemon.shared.scrub import scrub

        print(scrub(f"error: {type(exc).__name__}: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    finally:
        logging.getLogger("specd").debug("%s took %.3fs", args.command, time.monotonic() - started)
        if tuned and argv is None:  # the process ends now: see _exit_lean
            _exit_lean()


importgc.restore()  # last statement of the module body: see daemon/cli/importgc.py


if __name__ == "__main__":
    sys.exit(main())
