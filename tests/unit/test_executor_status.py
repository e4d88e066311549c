"""executor: dependency order, failure isolation, retries, concurrency; status vocabulary; journal."""

from __future__ import annotations

import asyncio
import json

from daemon.core.executor import BLOCKED, FAILED, SUCCEEDED, ActionResult, execute
from daemon.core.graph import Graph, Resource
from daemon.core.plan import Action, Op, Plan
from daemon.core.state import ApplyOutcome, Observed
from daemon.core.status import diff_statuses, resource_statuses
from daemon.runtime.journal import Journal
from daemon.shared.errors import ApplyError


def action(name, op=Op.CREATE, deps=()):
    return Action("table", name, op, "r", fingerprint=f"fp-{name}", depends_on=tuple(f"table/{d}" for d in deps))


def run(plan, behaviour, **kw):
    calls = []

    async def run_action(a):
        calls.append(a.name)
        return await behaviour(a)

    results = asyncio.run(execute(plan, run_action, backoff_s=0.001, **kw))
    return {r.key.split("/")[1]: r for r in results}, calls


def test_failure_blocks_only_dependents():
    plan = Plan("rev", "dev", (action("a"), action("b", deps=["a"]), action("c", deps=["b"]), action("d")))

    async def behaviour(a):
        if a.name == "a":
            raise ApplyError("source file missing")
        return ApplyOutcome("ok")

    results, calls = run(plan, behaviour)
    assert results["a"].status == FAILED and "source file missing" in results["a"].message
    assert results["b"].status == BLOCKED and results["c"].status == BLOCKED
    assert results["d"].status == SUCCEEDED
    assert sorted(calls) == ["a", "d"]


def test_transient_errors_are_retried_then_give_up():
    attempts = {"flaky": 0, "down": 0}

    async def behaviour(a):
        attempts[a.name] += 1
        if a.name == "flaky" and attempts["flaky"] < 3:
            raise ApplyError("timeout", transient=True)
        if a.name == "down":
            raise ConnectionError("refused")
        return ApplyOutcome("ok")

    results, _ = run(Plan("rev", "dev", (action("flaky"), action("down"))), behaviour, retries=2)
    assert results["flaky"].status == SUCCEEDED and results["flaky"].attempts == 3
    assert results["down"].status == FAILED and attempts["down"] == 3


def test_independent_actions_run_concurrently_within_the_limit():
    running = {"now": 0, "max": 0}

    async def behaviour(a):
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await asyncio.sleep(0.02)
        running["now"] -= 1
        return ApplyOutcome("ok")

    plan = Plan("rev", "dev", tuple(action(f"t{i}") for i in range(6)))
    run(plan, behaviour, max_parallel=3)
    assert running["max"] == 3


def test_deletes_run_after_everything_else():
    order = []

    async def behaviour(a):
        order.append(a.name)
        return ApplyOutcome("ok")

    plan = Plan("rev", "dev", (action("old", Op.DELETE), action("new"), action("unchanged", Op.UNCHANGED)))
    run(plan, behaviour)
    assert order == ["new", "old"]


def resource(name):
    return Resource(f"table/{name}", "table", name, f"specs/tables/{name}.yaml", None, {}, (), f"fp-{name}", 0)


def test_status_vocabulary():
    graph = Graph((resource("ok"), resource("stale"), resource("missing"), resource("broken")))
    observed = {
        "table/ok": Observed(True, "fp-ok", "rev1", "Healthy"),
        "table/stale": Observed(True, "old", "rev0", "Healthy"),
        "table/broken": Observed(True, "old", "rev0", "Healthy"),
    }
    results = {"table/broken": ActionResult("table/broken", "update", FAILED, "schema mismatch: column x")}
    statuses = {s.name: s for s in resource_statuses(graph, observed, "rev2", results)}
    assert (statuses["ok"].sync, statuses["ok"].health) == ("Synced", "Healthy")
    assert statuses["ok"].conditions[0].type == "Ready" and statuses["ok"].conditions[0].status
    assert (statuses["stale"].sync, statuses["missing"].health) == ("OutOfSync", "Missing")
    broken = statuses["broken"]
    assert (broken.sync, broken.health, broken.message) == ("OutOfSync", "Degraded", "schema mismatch: column x")
    assert any(c.type == "Stalled" and c.reason == "ApplyFailed" and c.revision == "rev2" for c in broken.conditions)
    assert [s.name for s in diff_statuses({s.key: s for s in statuses.values()}, statuses.values())] == []


def test_journal_survives_a_torn_last_line(tmp_path):
    journal = Journal(tmp_path / "events.jsonl")
    journal.append("ApplyStarted", "rev1", actions=["create table/a"])
    journal.append("ReconcileSucceeded", "rev1")
    with open(journal.path, "a") as handle:
        handle.write('{"ts": 1, "type": "Act')  # kill -9 mid-write
    events = journal.read()
    assert [e["type"] for e in events] == ["ApplyStarted", "ReconcileSucceeded"]
    assert journal.last("ReconcileSucceeded")["revision"] == "rev1"
    journal.append("RevisionRejected", "rev2", errors=["x"])
    assert json.loads(journal.path.read_text().splitlines()[-1])["type"] == "RevisionRejected"


def test_ref_watcher_wakes_on_commits_not_on_reads(tmp_path):
    import subprocess
    import time

    from daemon.runtime.watch import RefWatcher

    repo = tmp_path / "r"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e.invalid", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e.invalid", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "one"], cwd=repo, check=True, env=env)
    wakes = []
    watcher = RefWatcher(repo / ".git", lambda: wakes.append(time.monotonic()), debounce_s=0.05).start()
    try:
        for _ in range(5):  # what the daemon does every cycle: read the ref
            subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True)
        time.sleep(0.5)
        assert wakes == []
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "two"], cwd=repo, check=True, env=env)
        deadline = time.monotonic() + 5
        while not wakes and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(wakes) == 1
    finally:
        watcher.stop()
