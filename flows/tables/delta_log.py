"""Read a Delta table's history straight from `_delta_log/*.json`: the live state `observe` needs.

`plan` must observe 1,000 tables in well under a second, and opening a `DeltaTable` costs milliseconds
per table, so for local tables we parse the commit files ourselves (plain JSON lines, a few per commit):
each commit's `commitInfo` carries specd's custom metadata (fingerprint, git sha, build key, rows, ...),
and replaying `add`/`remove` actions tells which versions still have all their data files — a version
whose files were vacuumed cannot be restored. Object-store tables (`s3://`) get the same replay over one
listing of the table's prefix and a GET per commit file (daemon.shared.storage_uri), so restore and
vacuum judge them exactly as local ones.

A commit file that is truncated or garbled raises `CorruptState` naming it (never a bare JSONDecodeError):
the table adapter reports that one table as Degraded and everything else goes on.

Import-light: json and os only (pyarrow's filesystem on the object-store path).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from daemon.shared.corrupt import CorruptState, describe
from flows.tables import FINGERPRINT, is_local, local_path, tables_root

LOG_DIR = "_delta_log"


@dataclass(frozen=True)
class Commit:
    version: int
    timestamp_ms: int
    operation: str
    metadata: dict[str, Any]  # the specd.* keys of commitInfo
    complete: bool = True  # every data file of this version still exists
    rows: int | None = None  # rows live at this version (from the files' stats; None: unknown)


@dataclass(frozen=True)
class TableLog:
    uri: str
    version: int  # latest version
    commits: tuple[Commit, ...] = field(default=())  # specd commits (those with a fingerprint), oldest first

    @property
    def latest(self) -> Commit | None:
        return self.commits[-1] if self.commits else None

    @property
    def head_is_specd(self) -> bool:
        return bool(self.commits) and self.commits[-1].version == self.version


def _version_of(name: str) -> int | None:
    stem = name.split(".", 1)[0]
    return int(stem) if stem.isdigit() and len(stem) == 20 else None


def read_table_log(uri: str, storage_options: dict[str, str] | None = None) -> TableLog | None:
    """The table's specd commits, or None when no Delta table exists at `uri`."""
    if not is_local(uri):
        return _read_remote(uri, storage_options)
    root = local_path(uri)
    log_dir = os.path.join(root, LOG_DIR)
    try:
        names = os.listdir(log_dir)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return _replay(uri, log_dir, names, lambda: _existing_files(root), _read_local, None)


def _read_local(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _replay(uri: str, log_dir: str, names: list[str], existing_files: Any, read: Any, filesystem: Any) -> TableLog | None:
    """Replay the commit files named `names` in `log_dir` (read with `read(path) -> bytes`; checkpoints
    through the pyarrow `filesystem`, None: local). `existing_files()`: data files under the table root."""
    json_versions = sorted(v for n in names if n.endswith(".json") and (v := _version_of(n)) is not None)
    if not json_versions:
        return None
    start_files: dict[str, bool] = {}
    first = json_versions[0]
    if first > 0:  # older JSON cleaned up: start from the checkpoint just before the first JSON
        start_files = _checkpoint_files(log_dir, first - 1, names, filesystem)
        if start_files is None:  # delta-rs's cleanup keeps the checkpoint's own JSON (re-reading it is harmless)
            start_files = _checkpoint_files(log_dir, first, names, filesystem)
        if start_files is None:
            return TableLog(uri, json_versions[-1], ())
    existing = existing_files()
    missing_active = sum(1 for path in start_files if path not in existing)
    active: dict[str, int | None] = dict.fromkeys(start_files, None)
    rows: int | None = 0 if not start_files else None  # a checkpoint start: row counts unknown
    commits: list[Commit] = []
    for version in json_versions:
        info: dict[str, Any] = {}
        for action in _actions(f"{log_dir}/{version:020d}.json", read):
            if "add" in action:
                path = action["add"]["path"]
                if path not in active:
                    active[path] = count = _num_records(action["add"].get("stats"))
                    missing_active += path not in existing
                    rows = None if rows is None or count is None else rows + count
            elif "remove" in action:
                path = action["remove"]["path"]
                if path in active:
                    count = active.pop(path)
                    missing_active -= path not in existing
                    rows = None if rows is None or count is None else rows - count
            elif "commitInfo" in action:
                info = action["commitInfo"]
        specd = {k: v for k, v in info.items() if k.startswith("specd.")}
        if FINGERPRINT in specd:
            commits.append(Commit(version, int(info.get("timestamp", 0)), str(info.get("operation", "")), specd, missing_active == 0, rows))
    return TableLog(uri, json_versions[-1], tuple(commits))


def _actions(path: str, read: Any = _read_local) -> list[dict[str, Any]]:
    """The actions of one commit file; CorruptState naming the file when it is truncated or garbled."""
    try:
        raw = read(path)
    except OSError as exc:
        raise CorruptState(path, exc.strerror or str(exc)) from None
    actions = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            action = json.loads(line)
        except ValueError as exc:
            raise CorruptState(path, f"line {number} is not valid JSON ({describe(exc)})") from None
        if not isinstance(action, dict) or not all(isinstance(v, dict) for v in action.values()):
            raise CorruptState(path, f"line {number} is not a Delta action")
        if "add" in action and not isinstance(action["add"].get("path"), str) or "remove" in action and not isinstance(action["remove"].get("path"), str):
            raise CorruptState(path, f"line {number}: an add/remove action without a path")
        actions.append(action)
    if not actions:
        raise CorruptState(path, "the commit file is empty (truncated?)")
    return actions


def _num_records(stats: Any) -> int | None:
    if not stats:
        return None
    try:
        value = json.loads(stats).get("numRecords")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _existing_files(root: str) -> set[str]:
    """Every data file under the table root, as a path relative to it (Delta's `add.path`, unescaped)."""
    from urllib.parse import quote

    found: set[str] = set()
    for directory, dirs, files in os.walk(root):
        if os.path.basename(directory) == LOG_DIR:
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if d != LOG_DIR]
        rel_dir = os.path.relpath(directory, root)
        for name in files:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            found.add(rel)
            found.add(quote(rel, safe="/=-_.~"))  # partition values may be percent-encoded in the log
    return found


def _checkpoint_files(log_dir: str, version: int, names: list[str], filesystem: Any = None) -> dict[str, bool] | None:
    """Active files at `version` from its checkpoint parquet (None when there is no such checkpoint)."""
    prefix = f"{version:020d}.checkpoint"
    parts = sorted(n for n in names if n.startswith(prefix) and n.endswith(".parquet"))
    if not parts:
        return None
    import pyarrow.parquet as pq

    active: dict[str, bool] = {}
    for part in parts:
        try:
            table = pq.read_table(f"{log_dir}/{part}", columns=["add"], filesystem=filesystem)
        except (OSError, ValueError, KeyError) as exc:  # pyarrow: ArrowInvalid is a ValueError
            raise CorruptState(os.path.join(log_dir, part), f"unreadable checkpoint ({describe(exc)})") from None
        for row in table.column("add").to_pylist():
            if row and row.get("path"):
                active[row["path"]] = True
    return active


class StoreUnreachable(CorruptState):
    """The object store did not answer (network, endpoint, credentials): nothing is known to be broken,
    the table is observed again next cycle and a build waits (transient), unlike a torn commit file."""


def _read_remote(uri: str, storage_options: dict[str, str] | None) -> TableLog | None:
    """The same replay over an object store: one listing of the table's prefix gives the commit files and
    the data files (so a vacuumed version is known as such, and restore works as on local disk)."""
    from daemon.shared import storage_uri

    filesystem, root = storage_uri.filesystem(uri, storage_options)
    try:
        entries = storage_uri.list_entries(uri, storage_options, recursive=True)
    except OSError as exc:
        raise StoreUnreachable(uri, f"the object store did not answer the listing ({describe(exc)})") from None
    files = list(entries)
    prefix = LOG_DIR + "/"
    names = [p[len(prefix):] for p in files if p.startswith(prefix) and "/" not in p[len(prefix):]]
    if not names:
        return None

    def existing() -> set[str]:
        from urllib.parse import quote

        data = [p for p in files if not p.startswith(prefix)]
        return set(data) | {quote(p, safe="/=-_.~") for p in data}

    def read(path: str) -> bytes:
        # A commit file never changes once written (put-if-absent): the daemon observing every cycle
        # fetches each one once. Keyed by size and mtime too, so a table deleted and created again at the
        # same URI is read afresh.
        size, mtime = entries.get(path[len(root) + 1:], (0, 0))
        key = (path, size, mtime)
        cached = _COMMIT_CACHE.get(key)
        if cached is None:
            try:
                with filesystem.open_input_stream(path) as stream:
                    cached = stream.read()
            except OSError as exc:
                raise StoreUnreachable(path, f"the object store did not return it ({describe(exc)})") from None
            if len(_COMMIT_CACHE) >= _COMMIT_CACHE_MAX:
                _COMMIT_CACHE.clear()
            _COMMIT_CACHE[key] = cached
        return cached

    return _replay(uri, f"{root}/{LOG_DIR}", names, existing, read, filesystem)


_COMMIT_CACHE: dict[tuple[str, int, int], bytes] = {}
_COMMIT_CACHE_MAX = 50_000  # commit files are a few KB: bounded well under a few hundred MB


def list_tables(storage_root: str, storage_options: dict[str, str] | None = None) -> list[str]:
    """Names of the tables under a storage root (directories holding a Delta log), local or object store."""
    if not is_local(storage_root):
        from daemon.shared import storage_uri

        root = tables_root(storage_root)
        try:
            return [name for name in storage_uri.list_dirs(root, storage_options)
                    if storage_uri.list_files(f"{root}/{name}/{LOG_DIR}", storage_options)]
        except OSError:
            return []
    root = local_path(tables_root(storage_root))
    try:
        entries = os.scandir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with entries:
        return sorted(e.name for e in entries if e.is_dir() and os.path.isdir(os.path.join(e.path, LOG_DIR)))
