"""Status vocabulary (after Flux and Argo CD) and the append-only event journal.

Per resource: sync (Synced/OutOfSync), health (Healthy/Progressing/Degraded/Missing) and conditions
`Ready`, `Reconciling`, `Stalled`, each with a reason, a message and the git revision last applied and
last attempted. Events are appended to `events.jsonl` only when something changed; the journal is the
only record specd keeps of its own actions (everything else is read back from the live systems).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from daemon.core.executor import BLOCKED, FAILED, ActionResult
from daemon.core.graph import Graph
from daemon.core.state import DEGRADED, HEALTHY, MISSING, PROGRESSING, Observed
from daemon.shared.scrub import scrub_obj

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
        message = live.message or ("up to date" if synced else "differs from the spec")
        stalled = None
        if resource.key in reconciling:
            health = PROGRESSING
            message = "applying"
        elif result and result.status in (FAILED, BLOCKED):
            health = DEGRADED if live.exists else MISSING
            message = result.message
            stalled = Condition("Stalled", True, "ApplyFailed" if result.status == FAILED else "DependencyNotReady", result.message, revision)
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


class Journal:
    """Append-only JSON-lines event log. A torn last line (crash mid-write) is ignored on read."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, event_type: str, revision: str | None, **fields: Any) -> dict[str, Any]:
        event = scrub_obj({"ts": round(time.time(), 3), "type": event_type, "revision": revision, **fields})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(event, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a torn line from a crash stays on its own line
            os.write(fd, line)
        finally:
            os.close(fd)
        return event

    def read(self, limit: int | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        events = []
        with open(self.path, "rb") as handle:
            for raw in handle:
                try:
                    event = json.loads(raw)
                except ValueError:  # a torn or garbled line (not UTF-8 included) is skipped, not fatal
                    continue
                if isinstance(event, dict):
                    events.append(event)
        return events[-limit:] if limit else events

    def last(self, event_type: str) -> dict[str, Any] | None:
        for event in reversed(self.read()):
            if event.get("type") == event_type:
                return event
        return None


def diff_statuses(before: Mapping[str, ResourceStatus], after: Iterable[ResourceStatus]) -> list[ResourceStatus]:
    """Statuses whose sync, health or message changed: the only ones that deserve an event."""
    changed = []
    for status in after:
        old = before.get(status.key)
        if old is None or (old.sync, old.health, old.message) != (status.sync, status.health, status.message):
            changed.append(status)
    return changed

