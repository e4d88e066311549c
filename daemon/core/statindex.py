"""Spec files' sha1 known from their stat, so a second `specd plan` reads only the files that changed.

Why: the warm compose of 1,000 specs keys each document by the sha1 of its file, and reading and
hashing 1,000 files is ~10 ms of a ~0.5 s second `specd plan`; a stat is a quarter of that. The
compose cache file keeps, per file, (device, inode, size, mtime_ns, ctime_ns) and the sha1 of the text
read then; a file whose stat is the same now is taken to hold the same text.

Why that is safe: an entry is recorded only for a file whose mtime and ctime were both more than
`MARGIN_NS` older than the clock just before its stat was taken (a file written in the last second
is hashed every time until it is older). Any later write, truncation, rename over it or `touch` sets
its ctime to the time of that change — later than the recorded ctime by more than any timestamp
granularity — so the stat differs and the file is read and hashed again; `os.utime` cannot set ctime
back. What it assumes: the wall clock does not step back by more than `MARGIN_NS` between two runs,
and the file system keeps ctime (local file systems do). Only the CLI's disk cache uses it (the
daemon's in-memory cache composes a fresh checkout per commit, where every path is new).
"""

from __future__ import annotations

import os
import time

MARGIN_NS = 1_000_000_000  # files changed in the last second are hashed, not trusted by stat


def _key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StatIndex:
    """path -> (stat key, sha1): loaded with the cache file, what this run saw is what is saved."""

    def __init__(self, known: dict[str, tuple[tuple, str]] | None = None):
        self.known = known or {}
        self.seen: dict[str, tuple[tuple, str]] = {}
        self.changed = False  # something to save: an entry new or different from the loaded one

    def sha(self, path: str) -> str | None:
        """The sha1 recorded for this file if its stat is what it was, else None (read and `record` it)."""
        entry = self.known.get(path)
        if entry is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        if _key(st) != entry[0]:
            return None
        self.seen[path] = entry
        return entry[1]

    def stat_before_read(self, path: str) -> tuple[int, os.stat_result | None]:
        """(clock, stat) taken before the file is read, for `record` after the read."""
        now = time.time_ns()
        try:
            return now, os.stat(path)
        except OSError:
            return now, None

    def record(self, path: str, before: tuple[int, os.stat_result | None], sha: str) -> None:
        """Remember `sha` for the file as `before` saw it, if it had not changed for `MARGIN_NS` then
        and still has that stat after the read (the text hashed is the text of that stat)."""
        now, st = before
        if st is None or max(st.st_mtime_ns, st.st_ctime_ns) >= now - MARGIN_NS:
            return
        try:
            after = os.stat(path)
        except OSError:
            return
        key = _key(st)
        if _key(after) != key:
            return
        entry = (key, sha)
        self.seen[path] = entry
        if self.known.get(path) != entry:
            self.changed = True
