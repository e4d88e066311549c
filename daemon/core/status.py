"""Status vocabulary (after Flux and Argo CD).

Per resource: sync (Synced/OutOfSync), health (Healthy/Progressing/Degraded/Missing) and conditions
`Ready`, `Reconciling`, `Stalled`, each with a reason, a message and the git revision last applied and
last attempted. Pure: the journal that records status changes is `daemon.runtime.journal`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from daemon.core.executor import BLOCKED, DEPENDENCY_NOT_READY, FAILED, ActionResult
from daemon.core.graph import Graph
from daemon.core.state import DEGRADED, HEALTHY, MISSING, PROGRESSING, Observed

SYNCED, OUT_OF_SYNC = "Synced", "OutOfSync"


@dataclass(frozen=True)
class Condition:
    type: str  # Ready | Reconciling | Stalled
    status: bool
    reason: str
    message: str
    revision: str


@dataclass(frozen=True)
class ResourceStatus:
    kind: str
    name: str
    sync: str
    health: str
    message: str
    fingerprint: str | None
    live_fingerprint: str | None
    applied_revision: str | None
    attempted_revision: str | None
    conditions: tuple[Condition, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["conditions"] = [asdict(c) for c in self.conditions]
        return data


def resource_statuses(
    graph: Graph,
    observed: Mapping[str, Observed],
    revision: str,
    results: Mapping[str, ActionResult] | None = None,
    reconciling: Iterable[str] = (),
) -> list[ResourceStatus]:
    """Pure: desired × observed (after apply) × action results → one status per desired resource."""
    results = results or {}
    reconciling = set(reconciling)
    out = []
    for resource in graph.resources:
        live = observed.get(resource.key, Observed(exists=False))
        # Synced: the live fingerprint is the desired one, nothing drifted, and the data it consumed is not
        # behind what its retrain policy lets lag (a lagging model is OutOfSync: "data ahead by N rows").
        synced = live.exists and live.fingerprint == resource.fingerprint and not live.drift and not live.details.get("lagging")
        result = results.get(resource.key)
        health = live.health if live.exists else MISSING
        message = live.message or ("up to date" if synced else ("; ".join(live.drift) or "differs from the spec"))
        stalled = None
        if resource.key in reconciling:
            health = PROGRESSING
            message = "applying"
        elif result and result.status in (FAILED, BLOCKED):
            health = DEGRADED if live.exists else MISSING
            message = result.message
            stalled = Condition("Stalled", True, result.reason or ("ApplyFailed" if result.status == FAILED else DEPENDENCY_NOT_READY), result.message, revision)
        ready = synced and health == HEALTHY
        conditions = [
            Condition("Ready", ready, "Succeeded" if ready else ("Progressing" if health == PROGRESSING else "NotReady"), message, revision),
            Condition("Reconciling", resource.key in reconciling, "Applying" if resource.key in reconciling else "Idle", "", revision),
        ]
        if stalled:
            conditions.append(stalled)
        applied = live.revision if live.exists else None
        attempted = revision if (result or synced) else None
        out.append(
            ResourceStatus(
                resource.kind,
                resource.name,
                SYNCED if synced else OUT_OF_SYNC,
                health,
                message,
                resource.fingerprint,
                live.fingerprint,
                applied,
                attempted,
                tuple(conditions),
            )
        )
    return out


def diff_statuses(before: Mapping[str, ResourceStatus], after: Iterable[ResourceStatus]) -> list[ResourceStatus]:
    """Statuses whose sync, health or message changed: the only ones that deserve an event."""
    changed = []
    for status in after:
        old = before.get(status.key)
        if old is None or (old.sync, old.health, old.message) != (status.sync, status.health, status.message):
            changed.append(status)
    return changed

