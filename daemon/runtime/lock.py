"""One writer per state home: `specd apply` takes the daemon's lock and is refused while a daemon runs.

The daemon holds an flock on `<home>/daemon.lock` for its whole life. A `specd apply` on the same home
used to run beside it: it adopted the daemon's Prefect server, and stopped it on the way out, while the
two raced on the same tables, routing files and releases. Apply now takes the same lock first and, when
the daemon holds it, stops before touching anything, with a message that says who holds it and what to
do instead.
"""

from __future__ import annotations

from pathlib import Path

from daemon.runtime.daemon import AlreadyRunning, DaemonLock
from daemon.shared.paths import lock_path


class LockHeld(RuntimeError):
    """Another specd process (the daemon) owns this state home."""


def holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def acquire_for_apply(home: Path) -> DaemonLock:
    """The state home's lock for a one-off apply; LockHeld when a daemon (or another apply) has it."""
    lock = DaemonLock(lock_path(home))
    try:
        lock.acquire()
    except AlreadyRunning:
        path = lock_path(home)
        raise LockHeld(
            f"the daemon (pid {holder(path)}) holds {path}; it applies every commit of the branch it follows, "
            "so commit the change there (`specd plan` previews it, `specd sync KIND/NAME` reconciles a resource now), "
            "or stop the daemon (SIGTERM) to apply by hand"
        ) from None
    return lock
