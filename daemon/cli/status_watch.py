"""`specd status --watch` and the per-resource age of the last sync.

The age is how long ago the resource was last known to match its spec: its last applied action (from the
journal), or — when it is Synced now — the daemon's last finished cycle, which observed it in sync.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def age_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def last_sync_ages(home: Path, data: Mapping[str, Any], now: float | None = None) -> dict[str, str]:
    from daemon.runtime.journal import Journal
    from daemon.shared.paths import journal_path

    now = time.time() if now is None else now
    last: dict[str, float] = {}
    for event in Journal(journal_path(home)).read(5000):
        if event.get("type") == "ActionSucceeded" and event.get("resource"):
            last[event["resource"]] = max(last.get(event["resource"], 0.0), float(event.get("ts", 0)))
    cycle = (data.get("last_cycle") or {}).get("finished_at")
    out = {}
    for resource in data.get("resources", ()):
        key = f"{resource['kind']}/{resource['name']}"
        seen = last.get(key)
        if resource.get("sync") == "Synced" and cycle:
            seen = max(seen or 0.0, float(cycle))
        if seen:
            out[key] = age_text(max(0.0, now - seen))
    return out


def watch(render: Callable[[], int], interval: float) -> int:
    """Clear the terminal and redraw `render()` every `interval` seconds until Ctrl-C."""
    try:
        while True:
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            print(time.strftime("%H:%M:%S"), f"(every {interval:g}s, Ctrl-C to stop)")
            render()
            sys.stdout.flush()
            time.sleep(max(0.2, interval))
    except KeyboardInterrupt:
        return 0
