"""One reconcile cycle, owned here once: observe → plan → hold → apply → observe → status.

`specd run` (the daemon, every wake-up) and `specd apply` (once) both call `run_cycle`, so the same
commit produces the same plan, the same journal events and the same statuses whichever entry point
applied it (after Flux's one ordered list of reconcilers that every entry point runs).

Backoff and result classification live here too. A resource whose action failed is retried with
exponential backoff per fingerprint (a new fingerprint retries at once). While it is failing, its
dependents are *held*: they are not rebuilt from its stale output; their status says "blocked by X"
and they resume in the cycle after it recovers. The failure's reason (`ApplyError.reason`) stays in the
resource's `Stalled` condition for as long as the backoff lasts, not just for the cycle that failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from daemon.adapters.base import Adapter
from daemon.core.executor import BLOCKED, DEPENDENCY_NOT_READY, FAILED, SUCCEEDED, ActionResult
from daemon.core.plan import CHANGING, Plan
from daemon.core.state import MISSING_OBSERVED, Observed
from daemon.core.status import SYNCED, ResourceStatus, diff_statuses, resource_statuses
from daemon.runtime import metrics
from daemon.runtime.journal import EventType, Journal
from daemon.runtime.reconcile import Desired, apply, observe, plan

log = logging.getLogger(__name__)

NOOP, SUCCESS, FAILED_CYCLE = "noop", "success", "failed"
# Result details worth keeping in the journal (what `specd history` shows): small, never secret.
JOURNALED_DETAILS = ("version", "trained", "reused", "rebuilt", "retrained", "metadata", "trigger", "delta_version", "outcome")


@dataclass
class Backoff:
    fingerprint: str | None
    failures: int
    retry_at: float
    result: ActionResult  # the last failure: its reason stays in the Stalled condition


@dataclass
class CycleState:
    """What survives from one cycle to the next (the daemon keeps one; `specd apply` starts fresh)."""

    desired_revision: str | None = None
    applied_revision: str | None = None
    statuses: dict[str, ResourceStatus] = field(default_factory=dict)
    backoff: dict[str, Backoff] = field(default_factory=dict)
    max_backoff_s: float = 300.0
    base_backoff_s: float = 5.0


@dataclass(frozen=True)
class CycleResult:
    plan: Plan  # what was applied (held actions removed)
    held: dict[str, str]  # key -> why it was not attempted
    results: dict[str, ActionResult]
    statuses: list[ResourceStatus]
    result: str  # noop | success | failed
    in_sync: bool


def run_cycle(
    desired: Desired,
    adapters: Mapping[str, Adapter],
    state: CycleState,
    journal: Journal,
    *,
    use_prefect: bool = True,
    on_result: Callable[[ActionResult], None] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    via: str | None = None,
    head: str | None = None,
    forced: Collection[str] = (),
    now: Callable[[], float] = time.time,
) -> CycleResult:
    """`head`: the branch head when it differs from `desired` (a rejected head: the last valid revision is
    kept converged, and the cycle is not in sync). `via` tags the journal events (`specd apply`).
    `forced`: resource keys `specd sync` asked to refresh even if they look in sync (a `SyncFinished`
    event closes the request)."""
    extra: dict[str, Any] = {"via": via} if via else {}
    state.desired_revision = head or desired.revision
    observed = observe(adapters, desired.graph)
    the_plan, held = hold(plan(desired, observed, adapters, forced=forced), desired, state, now())
    results: dict[str, ActionResult] = {}
    if on_plan:
        on_plan(the_plan)

    def record(result: ActionResult) -> None:
        results[result.key] = result
        _record_result(result, desired, state, journal, now(), extra)
        if on_result:
            on_result(result)

    if the_plan.has_changes:
        log.info("%s", the_plan.to_text())
        journal.append(EventType.APPLY_STARTED, desired.revision, actions=[f"{a.op} {a.key}" for a in the_plan.changes],
                       plan=[{"resource": a.key, "op": str(a.op), "reason": a.reason, "summary": a.summary, "follows": list(a.follows)}
                             for a in the_plan.changes], **extra)
        publish_statuses(desired, observed, state, journal, {}, reconciling=[a.key for a in the_plan.changes])
        apply(the_plan, desired, adapters, use_prefect=use_prefect, on_result=record)
        observed = observe(adapters, desired.graph)
    shown = {**_held_results(held, state), **results}
    statuses = publish_statuses(desired, observed, state, journal, shown, extra=extra)
    failed = any(r.status != SUCCEEDED for r in results.values()) or bool(held) or any(k in state.backoff for k in desired.graph.by_key())
    # a model its retrain policy lets lag behind its table is OutOfSync by choice: it does not hold the revision back
    all_synced = all(s.sync == SYNCED or observed.get(s.key, MISSING_OBSERVED).details.get("lagging") for s in statuses)
    if all_synced and not failed:
        state.applied_revision = desired.revision
        metrics.set_revision(metrics.APPLIED_REVISION, desired.revision)
        metrics.LAST_SUCCESS.set(now())
        if results:
            journal.append(EventType.RECONCILE_SUCCEEDED, desired.revision, actions=len(results), **extra)
    in_sync = all_synced and not failed and state.applied_revision == state.desired_revision
    metrics.IN_SYNC.set(1 if in_sync else 0)
    if forced:
        ok = all(r.status == SUCCEEDED for r in results.values())
        journal.append(EventType.SYNC_FINISHED, desired.revision, resources=sorted(forced), ok=ok,
                       message=f"sync of {', '.join(sorted(forced))}: {len(results)} action(s)" + ("" if ok else ", some failed"), **extra)
    outcome = (FAILED_CYCLE if failed else NOOP) if not results else (FAILED_CYCLE if failed else SUCCESS)
    return CycleResult(the_plan, held, results, statuses, outcome, in_sync)


def hold(the_plan: Plan, desired: Desired, state: CycleState, now: float) -> tuple[Plan, dict[str, str]]:
    """Remove the actions of resources in backoff (until their retry time) and of everything downstream
    of a failing resource that is not retried now: no dependent is rebuilt from a stale upstream."""
    changing = {a.key: a for a in the_plan.actions if a.op in CHANGING}
    for key in [k for k in state.backoff if k not in changing]:
        state.backoff.pop(key, None)  # converged by other means, or no longer desired
    held: dict[str, str] = {}
    waiting = [k for k, a in changing.items() if (b := state.backoff.get(k)) and b.fingerprint == a.fingerprint and b.retry_at > now]
    for key in [k for k, a in changing.items() if (b := state.backoff.get(k)) and b.fingerprint != a.fingerprint]:
        state.backoff.pop(key, None)  # a new spec: retry at once
    for key in waiting:
        held[key] = f"in backoff after {state.backoff[key].failures} failure(s), retry in {max(0.0, state.backoff[key].retry_at - now):.0f}s"
    for key in waiting:
        for dependent in sorted(desired.graph.dependents(key)):
            if dependent in changing and dependent not in held:
                held[dependent] = f"blocked by {key} (failing; waiting for it to recover)"
    if not held:
        return the_plan, held
    return replace(the_plan, actions=tuple(a for a in the_plan.actions if a.key not in held)), held


def _held_results(held: Mapping[str, str], state: CycleState) -> dict[str, ActionResult]:
    out = {}
    for key, why in held.items():
        backoff = state.backoff.get(key)
        if backoff is not None:
            out[key] = replace(backoff.result, message=f"{backoff.result.message} ({why})")
        else:
            out[key] = ActionResult(key, "held", BLOCKED, why, reason=DEPENDENCY_NOT_READY)
    return out


def _record_result(result: ActionResult, desired: Desired, state: CycleState, journal: Journal, now: float, extra: dict[str, Any]) -> None:
    kind = result.key.split("/", 1)[0]
    metrics.ACTIONS.labels(kind=kind, op=result.op, result=result.status).inc()
    metrics.ACTION_DURATION.labels(kind=kind, op=result.op).observe(result.duration_s)
    if result.status == SUCCEEDED:
        state.backoff.pop(result.key, None)
        log.info("%s %s: %s", result.op, result.key, result.message)
        journal.append(EventType.ACTION_SUCCEEDED, desired.revision, resource=result.key, op=result.op, message=result.message,
                       duration_s=round(result.duration_s, 3), details={k: v for k, v in result.details.items() if k in JOURNALED_DETAILS},
                       **extra)
        return
    if result.status == FAILED:
        resource = desired.graph.by_key().get(result.key)
        previous = state.backoff.get(result.key)
        failures = (previous.failures + 1) if previous else 1
        delay = min(state.max_backoff_s, state.base_backoff_s * 2 ** (failures - 1))
        state.backoff[result.key] = Backoff(resource.fingerprint if resource else None, failures, now + delay, result)
    log.error("%s %s %s: %s", result.op, result.key, result.status, result.message)
    event = EventType.ACTION_FAILED if result.status == FAILED else EventType.ACTION_BLOCKED
    journal.append(event, desired.revision, resource=result.key, op=result.op, message=result.message, reason=result.reason, **extra)


def publish_statuses(
    desired: Desired,
    observed: Mapping[str, Observed],
    state: CycleState,
    journal: Journal,
    results: Mapping[str, ActionResult],
    reconciling: tuple[str, ...] | list[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> list[ResourceStatus]:
    statuses = resource_statuses(desired.graph, observed, desired.revision, results, reconciling)
    for changed in diff_statuses(state.statuses, statuses):
        if not reconciling:
            journal.append(EventType.STATUS_CHANGED, desired.revision, resource=changed.key, sync=changed.sync, health=changed.health,
                           message=changed.message, **(extra or {}))
    state.statuses = {s.key: s for s in statuses}
    metrics.record_statuses(statuses)
    return statuses


def status_document(state: CycleState, *, rejected: Mapping[str, Any] | None = None, last_cycle: Mapping[str, Any] | None = None,
                    daemon: str | None = None) -> dict[str, Any]:
    """The status JSON: the daemon's `status.json` and `/status`, and `specd status` (running or not)."""
    document: dict[str, Any] = {
        "revision": state.applied_revision,
        "desired_revision": state.desired_revision,
        "in_sync": bool(state.applied_revision and state.applied_revision == state.desired_revision),
        "rejected": dict(rejected) if rejected else None,
        "last_cycle": dict(last_cycle or {}),
        "resources": [s.to_json() for s in state.statuses.values()],
    }
    if daemon is not None:
        document["daemon"] = daemon
    return document
