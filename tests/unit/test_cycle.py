"""`run_cycle` with an in-memory adapter: result classification, backoff, held dependents, reasons in Stalled,
and the journal events one cycle writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.core.documents import Composed
from daemon.core.graph import Graph, Resource
from daemon.core.state import HEALTHY, ApplyOutcome, Observed
from daemon.runtime.cycle import CycleState, run_cycle, status_document
from daemon.runtime.journal import EventType, Journal
from daemon.runtime.reconcile import Desired
from daemon.schema.environment import EnvironmentSpec
from daemon.shared.errors import ApplyError


class FakeTables:
    """Live state in a dict; `broken` names fail to apply with a reason."""

    kind = "table"

    def __init__(self) -> None:
        self.live: dict[str, str] = {}
        self.broken: set[str] = set()
        self.applied: list[str] = []

    def observe(self, resources):
        return {r.key: Observed(True, self.live[r.name], "rev", HEALTHY, "live") if r.name in self.live else Observed(False) for r in resources}

    def apply(self, action, resource):
        self.applied.append(action.name)
        if action.name in self.broken:
            raise ApplyError(f"table {action.name}: quality checks failed", reason="QualityFailed")
        self.live[action.name] = action.fingerprint
        return ApplyOutcome(f"built {action.name}")

    def describe(self, action, resource, live=None):
        return "build"


def table(name: str, *deps: str, wave: int = 0) -> Resource:
    return Resource(f"table/{name}", "table", name, f"specs/tables/{name}.yaml", None, {}, tuple(f"table/{d}" for d in deps), f"fp-{name}", wave)


def desired(revision: str = "a" * 40) -> Desired:
    env = EnvironmentSpec(name="dev").model_copy(update={"daemon": EnvironmentSpec(name="dev").daemon.model_copy(update={"action_retries": 0})})
    graph = Graph((table("raw"), table("clean", "raw", wave=1), table("features", "clean", wave=2), table("other")))
    return Desired(revision, Path("."), Composed(env, ()), graph)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "events.jsonl")


def test_a_failing_resource_holds_its_dependents_until_it_recovers(journal: Journal) -> None:
    adapter, state, clock = FakeTables(), CycleState(), [1000.0]
    adapter.broken = {"raw"}
    want = desired()
    first = run_cycle(want, {"table": adapter}, state, journal, use_prefect=False, now=lambda: clock[0])
    assert first.result == "failed" and not first.in_sync
    assert first.results["table/raw"].reason == "QualityFailed"
    assert first.results["table/clean"].status == "blocked" and "other" in adapter.live

    clock[0] += 1  # inside the backoff window: raw is not retried, clean and features are held
    adapter.applied.clear()
    second = run_cycle(want, {"table": adapter}, state, journal, use_prefect=False, now=lambda: clock[0])
    assert adapter.applied == [] and not second.plan.has_changes
    assert second.held["table/clean"] == "blocked by table/raw (failing; waiting for it to recover)"
    assert second.held["table/features"].startswith("blocked by table/raw")
    statuses = {s.key: s for s in second.statuses}
    stalled = {c.type: c for c in statuses["table/raw"].conditions}["Stalled"]
    assert stalled.reason == "QualityFailed" and "quality checks failed" in stalled.message  # the reason outlives its cycle
    assert {c.type: c for c in statuses["table/clean"].conditions}["Stalled"].reason == "DependencyNotReady"
    assert "blocked by table/raw" in statuses["table/clean"].message

    adapter.broken.clear()
    clock[0] += 3600  # backoff elapsed: raw is retried, then its dependents resume in dependency order
    third = run_cycle(want, {"table": adapter}, state, journal, use_prefect=False, now=lambda: clock[0])
    assert adapter.applied == ["raw", "clean", "features"]
    assert third.result == "success" and third.in_sync and not state.backoff
    assert status_document(state)["revision"] == want.revision

    fourth = run_cycle(want, {"table": adapter}, state, journal, use_prefect=False, now=lambda: clock[0])
    assert fourth.result == "noop" and fourth.in_sync


def test_one_cycle_writes_the_journal_once_per_fact(journal: Journal) -> None:
    adapter = FakeTables()
    run_cycle(desired(), {"table": adapter}, CycleState(), journal, use_prefect=False, via="specd apply")
    events = [(e["type"], e.get("resource")) for e in journal.read()]
    assert events[0] == (EventType.APPLY_STARTED, None)
    assert sorted(e for e in events if e[0] == EventType.ACTION_SUCCEEDED) == sorted((EventType.ACTION_SUCCEEDED, f"table/{n}") for n in ("raw", "clean", "features", "other"))
    assert [e for e in events if e[0] == EventType.STATUS_CHANGED] == [(EventType.STATUS_CHANGED, f"table/{n}") for n in ("raw", "clean", "features", "other")]
    assert events[-1] == (EventType.RECONCILE_SUCCEEDED, None)
    assert all(e["via"] == "specd apply" for e in journal.read())


def test_a_rejected_head_keeps_the_last_valid_revision_converged_but_not_in_sync(journal: Journal) -> None:
    state = CycleState()
    result = run_cycle(desired(), {"table": FakeTables()}, state, journal, use_prefect=False, head="b" * 40)
    assert result.result == "success" and not result.in_sync
    assert (state.applied_revision, state.desired_revision) == ("a" * 40, "b" * 40)
