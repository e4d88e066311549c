"""The append-only event journal (`events.jsonl`) and the one vocabulary of its event types.

The journal is the only record specd keeps of its own actions (everything else is read back from the
live systems). `specd run` and `specd apply` write it through the same reconcile cycle
(`daemon.runtime.cycle`), so the same commit leaves the same events whichever entry point applied it.
Events are appended only when something happened or changed.
"""

from __future__ import annotations

import json
import os
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from daemon.shared.scrub import scrub_obj


class EventType(StrEnum):
    DAEMON_STARTED = "DaemonStarted"
    DAEMON_STOPPED = "DaemonStopped"
    REVISION_REJECTED = "RevisionRejected"
    APPLY_STARTED = "ApplyStarted"
    ACTION_SUCCEEDED = "ActionSucceeded"
    ACTION_FAILED = "ActionFailed"
    ACTION_BLOCKED = "ActionBlocked"
    ACTION_HELD = "ActionHeld"  # not attempted: the resource (or one upstream) is in backoff
    STATUS_CHANGED = "StatusChanged"
    RECONCILE_SUCCEEDED = "ReconcileSucceeded"
    RECONCILE_FAILED = "ReconcileFailed"
    SYNC_FINISHED = "SyncFinished"  # a `specd sync` request was carried out
    PREFECT_SERVER_RESTARTED = "PrefectServerRestarted"  # the keeper brought a dead embedded server back


class Journal:
    """Append-only JSON-lines event log. A torn last line (crash mid-write) is ignored on read."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, event_type: EventType, revision: str | None, **fields: Any) -> dict[str, Any]:
        event = scrub_obj({"ts": round(time.time(), 3), "type": str(event_type), "revision": revision, **fields})
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

    def last(self, event_type: EventType) -> dict[str, Any] | None:
        for event in reversed(self.read()):
            if event.get("type") == event_type:
                return event
        return None

