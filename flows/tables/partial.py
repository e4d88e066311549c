"""A failed build leaves nothing behind in the table's directory, and a full disk says so plainly.

A build writes its Parquet files into the table directory first and makes them visible with one Delta
commit at the end. When it fails before that commit — the disk filled up half-way through a file, the
source broke — the files it wrote are unreferenced garbage: invisible to readers, but they hold the very
space that ran out, so the retry would fail again. `no_partial_files` snapshots the directory before the
build (the table lock is held, so nothing else writes there) and, on failure, removes every file that
appeared since and that no new commit references: staged Parquet files, the file being written, temp
files of an unfinished commit. Committed data is never touched.

`disk_full` turns ENOSPC, whichever engine reports it (Python's OSError, pyarrow's ArrowIOError,
deltalake's or DuckDB's "No space left on device"), into "no space left on <path>".
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from flows.tables import is_local, local_path

LOG_DIR = "_delta_log"
_VERSION = re.compile(r"^\d{20}\.json$")
_ENOSPC = re.compile(r"no space left on device|os error 28|errno 28|\bENOSPC\b|disk quota exceeded|os error 122", re.I)


def _files(root: str) -> set[str]:
    found: set[str] = set()
    for directory, _, names in os.walk(root):
        found.update(os.path.join(directory, name) for name in names)
    return found


def _committed_since(root: str, before: set[str]) -> set[str]:
    """Absolute paths of the data files that commits made after the snapshot add (they are live)."""
    live: set[str] = set()
    log_dir = os.path.join(root, LOG_DIR)
    for path in _files(log_dir) - before:
        if not _VERSION.match(os.path.basename(path)):
            continue
        try:
            with open(path, "rb") as handle:
                for line in handle:
                    action = json.loads(line) if line.strip() else {}
                    if "add" in action:
                        from urllib.parse import unquote

                        live.add(os.path.join(root, unquote(action["add"]["path"])))
        except (OSError, ValueError):
            continue  # a torn new version: the table reader reports it; its files are not live
    return live


def _dirs(root: str) -> set[str]:
    found = {root} if os.path.isdir(root) else set()
    for directory, names, _ in os.walk(root):
        found.update(os.path.join(directory, name) for name in names)
    return found


@contextmanager
def no_partial_files(uris: Sequence[str]) -> Iterator[None]:
    """On failure, remove the files written under these local table directories since entry and not
    referenced by a commit made since (and the directories that held only those); committed versions
    stay as they are."""
    roots = [local_path(u) for u in uris if is_local(u)]
    before = {root: (_files(root), _dirs(root)) for root in roots}
    try:
        yield
    except BaseException:
        for root in roots:
            files_before, dirs_before = before[root]
            new = _files(root) - files_before
            keep = _committed_since(root, files_before) if new else set()
            for path in new - keep:
                if os.path.dirname(path) == os.path.join(root, LOG_DIR) and _VERSION.match(os.path.basename(path)):
                    continue  # a version file is a commit: never removed
                try:
                    os.unlink(path)
                except OSError:
                    pass
            for directory in sorted(_dirs(root) - dirs_before, key=len, reverse=True):
                try:
                    os.rmdir(directory)  # only when empty
                except OSError:
                    pass
        raise


def is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC (or EDQUOT) anywhere in the exception chain, however the engine worded it."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if _ENOSPC.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def disk_full_path(exc: BaseException, fallback: str) -> str:
    """The path to name in the message: the file the OS error names when it lies under `fallback`'s
    filesystem, else `fallback` (the table directory)."""
    filename = getattr(exc, "filename", None)
    return str(filename) if filename else fallback
