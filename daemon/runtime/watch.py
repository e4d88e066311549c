"""Noticing new commits: inotify (watchdog) for local repositories, polling for remotes, debounced.

A commit on a local branch shows up as a rename of `refs/heads/<branch>.lock` onto the ref, or as a
rewrite of `packed-refs`; we react to those paths only (object writes are noise) and debounce bursts
(~0.3 s) into one wake-up. Remotes cannot be watched: the loop polls them every `poll_interval_s`, and
polls local repositories too as a safety net.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

WRITE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})


class Debouncer:
    """Calls `action` once, `delay_s` after the last of a burst of `trigger()` calls."""

    def __init__(self, delay_s: float, action: Callable[[], None]):
        self.delay_s = delay_s
        self.action = action
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def trigger(self) -> None:
        with self._lock:
            if self._timer:
                self._timer.cancel()
            self._timer = threading.Timer(self.delay_s, self.action)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        with self._lock:
            if self._timer:
                self._timer.cancel()


def is_ref_change(path: str, git_dir: Path) -> bool:
    try:
        rel = Path(path).relative_to(git_dir).as_posix()
    except ValueError:
        return False
    return rel.startswith("refs/heads/") or rel in ("packed-refs", "HEAD") or rel.startswith("refs/remotes/")


class RefWatcher:
    """Watches a local git directory and wakes the loop (debounced) when a ref may have moved."""

    def __init__(self, git_dir: Path, wake: Callable[[], None], debounce_s: float = 0.3):
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        self.git_dir = git_dir
        self.debouncer = Debouncer(debounce_s, wake)
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:  # type: ignore[no-untyped-def]
                # Reads raise inotify events too (watchdog's "opened", "closed_no_write"): reacting to
                # them would make our own `git rev-parse` wake the loop again and again.
                if event.event_type not in WRITE_EVENTS:
                    return
                for path in (getattr(event, "src_path", ""), getattr(event, "dest_path", "")):
                    if path and is_ref_change(str(path), watcher.git_dir):
                        watcher.debouncer.trigger()
                        return

        self.observer = Observer()
        self.observer.daemon = True
        self.observer.schedule(Handler(), str(git_dir), recursive=False)
        refs = git_dir / "refs"
        if refs.is_dir():
            self.observer.schedule(Handler(), str(refs), recursive=True)

    def start(self) -> RefWatcher:
        self.observer.start()
        return self

    def stop(self) -> None:
        self.debouncer.cancel()
        self.observer.stop()
        self.observer.join(timeout=5)
