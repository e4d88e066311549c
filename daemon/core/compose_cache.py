"""A content-addressed cache of validated spec documents, so a commit recomposes only what changed.

Key: (kind, name, sha1 of the file's bytes, hash of the environment when the file interpolates it).
Files with a defaults list (their presets could change) or `oc.env` (the process environment could
change) are never cached. The daemon keeps one cache in memory across cycles; the CLI keeps one on
disk under the state home (`cache/compose-<env>.pickle`, trusted like the rest of the state home), so
a second `specd plan` is warm too.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

from daemon.shared.fsio import atomic_write_bytes

_DEFAULTS = re.compile(r"^defaults\s*:", re.MULTILINE)
FORMAT = 1


def cache_key(kind: str, name: str, text: str, env_digest: str) -> tuple | None:
    """The key for one file's validated document, or None when it must not be cached."""
    if "oc.env" in text or _DEFAULTS.search(text):
        return None
    content = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
    return (kind, name, content, env_digest if "${" in text else "")


class ComposeCache:
    def __init__(self, path: Path | None = None, limit: int = 50_000):
        self.path = path
        self.limit = limit
        self.entries: dict[tuple, Any] = {}
        self.dirty = False
        if path and path.exists():
            try:
                with open(path, "rb") as handle:
                    version, entries = pickle.load(handle)
                if version == FORMAT:
                    self.entries = entries
            except Exception:  # a stale or torn cache is only a miss
                self.entries = {}

    def get(self, key: tuple | None) -> Any:
        return self.entries.get(key) if key is not None else None

    def put(self, key: tuple | None, value: Any) -> None:
        if key is None:
            return
        if len(self.entries) >= self.limit:
            self.entries.clear()
        self.entries[key] = value
        self.dirty = True

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        atomic_write_bytes(self.path, pickle.dumps((FORMAT, self.entries), protocol=pickle.HIGHEST_PROTOCOL), durable=False)
        self.dirty = False
