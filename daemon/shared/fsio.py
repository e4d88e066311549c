"""Crash-safe file writes and tolerant reads, written once for every writer of small state files.

A reader (a service worker polling its routing file, `specd status`, the next daemon after kill -9) must
see either the old content or the new one, never half of it: write a temp file in the same directory,
fsync it, rename it over the target, fsync the directory (so the rename itself survives a power cut).
`durable=False` skips the fsyncs for files that are rebuilt anyway (status snapshots, caches).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from daemon.shared.corrupt import CorruptState
from daemon.shared.corrupt import read_json as read_checked


def atomic_write_bytes(path: Path | str, data: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str, *, mode: int = 0o600, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode, durable=durable)


def atomic_write_json(path: Path | str, data: Any, *, mode: int = 0o600, durable: bool = True, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=True, default=str), mode=mode, durable=durable)


def read_json(path: Path | str) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing, unreadable, torn or not an object.
    The lenient face of `daemon.shared.corrupt.read_json`, which names what is wrong instead."""
    try:
        value = read_checked(path)
    except CorruptState:
        return None
    return value if isinstance(value, dict) else None


def fsync_dir(directory: Path | str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
