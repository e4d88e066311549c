"""A content-addressed cache of validated spec documents, so a commit recomposes only what changed.

Key: (kind, name, sha1 of the file's bytes, the file's own `-o` overrides). An entry also records what
else its document was composed from, and is a hit only while all of that is unchanged:
- every file of its defaults chain (presets, and their presets) by path and sha1 — editing a preset
  invalidates exactly the documents that use it; a deleted or renamed preset is a miss;
- the environment digest, when any file of the chain interpolates (`${…}`);
- the values of the process variables the chain reads through `${oc.env:VAR,…}` (as a digest).

The daemon keeps one cache in memory across cycles. The CLI keeps one on disk under the state home
(`cache/compose-<env>.bin`) so a second `specd plan` is warm too: a versioned header, a digest of the
code the cached objects come from (schema models, compose) and a sha256 of the pickled payload are
checked before anything is unpickled, so a truncated, corrupt, foreign or stale file is only a miss
(and rewritten); it is written to a temporary file and renamed, so a crash never leaves half a file.
The state home is trusted like the rest of it (it holds the journal and lake too). The file stores the
derive hooks' models (generated dashboards) as `daemon.core.deferred.Deferred`: a warm plan reads their
normalised data and unpickles a model only where something reads `.spec` (a generated dashboard is
stored as its normalised data alone, validated again on that first read). Its other models are pickled
by `daemon.core.modelpickle` (restored without pydantic's Python `__setstate__`), and it keeps a stat
index of the files read (`daemon.core.statindex`): a second `specd plan` takes the sha1 of a file whose
(device, inode, size, mtime, ctime) is unchanged from it instead of reading the file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from daemon.core import datamemo, modelpickle
from daemon.core.deferred import Deferred
from daemon.core.kinds import KINDS
from daemon.core.statindex import StatIndex
from daemon.shared.fsio import atomic_write_bytes
from daemon.shared.gcpause import paused

FORMAT = 7  # 4: derived documents' models stored as `Deferred`; 5: models pickled by `modelpickle`; 6: the stat index; 7: generated dashboards as their data
MAGIC = b"specd-compose-cache\n"
_OC_ENV = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)")
_CODE_DIGEST: str | None = None


def digest_text(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def cache_key(kind: str, name: str, text: str, overrides: Iterable[tuple[str, Any]] = ()) -> tuple:
    """The key for one file's validated document (what else it depends on is checked by `get`)."""
    return cache_key_of(kind, name, digest_text(text), overrides)


def cache_key_of(kind: str, name: str, sha: str, overrides: Iterable[tuple[str, Any]] = ()) -> tuple:
    """`cache_key` from the text's sha1 (`digest_text`), e.g. as the stat index knows it."""
    return (kind, name, sha, repr(tuple(overrides)))


def process_env_digest(names: Iterable[str]) -> str:
    material = "\0".join(f"{name}={os.environ.get(name, chr(1))}" for name in sorted(set(names)))
    return hashlib.sha256(material.encode()).hexdigest()


def code_digest() -> str:
    """Digest of the sources whose classes and rules the cached documents come from."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        here = Path(__file__).resolve().parent
        sources = sorted((here.parent / "schema").glob("*.py")) + [here / "compose.py", here / "presets.py", here / "kinds.py", here / "deferred.py", here / "modelpickle.py", here / "statindex.py"]
        for kind in KINDS:  # derive hooks memoise their output with the cache (`ComposeCache.memo`)
            if kind.derive:
                spec = importlib.util.find_spec(kind.derive.split(":")[0])
                if spec is not None and spec.origin:
                    sources += sorted(Path(spec.origin).parent.glob("*.py"))
        h = hashlib.sha256()
        for source in sources:
            h.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
        _CODE_DIGEST = h.hexdigest()
    return _CODE_DIGEST


class Dependencies:
    """What a document was composed from besides its own file: see the module docstring."""

    __slots__ = ("files", "env_digest", "oc_env", "oc_env_digest")

    def __init__(self, files: tuple[tuple[str, str], ...], env_digest: str, oc_env: tuple[str, ...], oc_env_digest: str):
        self.files = files  # ((path relative to the checkout, sha1), ...) of the defaults chain
        self.env_digest = env_digest  # "" when nothing in the chain interpolates
        self.oc_env = oc_env
        self.oc_env_digest = oc_env_digest

    @classmethod
    def of(cls, chain: Iterable[tuple[str, str]], env_digest: str, own: str = "") -> Dependencies | None:
        """From the chain's (relative path, text) — `own`, the file itself, is in the key already;
        None when it must not be cached (an `oc.env` whose variable name cannot be read statically)."""
        files, interpolates, names = [], False, []
        for rel, text in chain:
            if rel != own:
                files.append((rel, digest_text(text)))
            interpolates = interpolates or "${" in text
            found = _OC_ENV.findall(text)
            if text.count("oc.env") != len(found):
                return None
            names.extend(found)
        oc_env = tuple(sorted(set(names)))
        return cls(tuple(files), env_digest if interpolates else "", oc_env, process_env_digest(oc_env) if oc_env else "")

    def hold(self, env_digest: str, file_digest: Callable[[str], str | None]) -> bool:
        if self.env_digest and self.env_digest != env_digest:
            return False
        if self.oc_env and process_env_digest(self.oc_env) != self.oc_env_digest:
            return False
        return all(file_digest(rel) == sha for rel, sha in self.files)

    def __getstate__(self) -> tuple:
        return (self.files, self.env_digest, self.oc_env, self.oc_env_digest)

    def __setstate__(self, state: tuple) -> None:
        self.files, self.env_digest, self.oc_env, self.oc_env_digest = state


def _extras(value: Any) -> tuple | None:
    """What `datamemo` derived from the dicts of a cached value (its normalised data), to store with it."""
    if not isinstance(value, tuple):
        return None
    found = tuple(datamemo.export(part) if isinstance(part, dict) else None for part in value)
    return found if any(found) else None


# Memos whose values are (model, its normalised data) pairs that the model's class validates back into
# an equal model (generated dashboards: tests/unit/test_cold_plan_paths.py): stored as the data alone.
_REBUILT_FROM_DATA = frozenset({"derive:dashboard"})


def _deferring(value: Any, rebuild: bool = False) -> Any:
    """A memo value with its validated models as `Deferred` (derived documents: a warm plan reads
    their normalised data, and unpickles or revalidates a model only where something reads `.spec`)."""
    if not isinstance(value, tuple):
        return value
    from pydantic import BaseModel

    if rebuild and len(value) == 2 and isinstance(value[0], BaseModel) and isinstance(value[1], dict):
        return (Deferred.rebuilt_from(value[0], value[1]), value[1])
    return tuple(Deferred.of(part) if isinstance(part, BaseModel) else part for part in value)


def _adopt(value: Any, extras: tuple | None) -> None:
    for part, values in zip(value, extras or (), strict=False):
        datamemo.adopt(part, values)


class Memo(dict):
    """A dict kept with the cache for a derive hook (keys: content digests); remembers what was used."""

    def __init__(self, data: dict | None = None, extras: dict | None = None):
        super().__init__(data or {})
        self.used: set = set()
        self.dirty = False
        self.extras: dict = extras or {}  # key -> `_extras` of its value, as loaded: adopted on first use

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            self.used.add(key)
            value = self[key]
            if self.extras:
                _adopt(value, self.extras.pop(key, None))
            return value
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.used.add(key)
        self.dirty = True

    def clear(self) -> None:
        super().clear()
        self.used.clear()

    def kept(self) -> dict:
        return {k: v for k, v in self.items() if k in self.used}


class ComposeCache:
    def __init__(self, path: Path | None = None, limit: int = 50_000):
        self.path = path
        self.limit = limit
        self.entries: dict[tuple, tuple[Dependencies, Any]] = {}
        self.memos: dict[str, Memo] = {}
        self.used: set[tuple] = set()  # entries read or written by this process: what `save` keeps
        self.dirty = False
        self.hits = 0
        self.misses = 0
        self.stats: StatIndex | None = None  # files' sha1 by their stat: only with a disk file (statindex.py)
        if path is not None:
            self.entries, memos, extras, stats = load(path)
            self.memos = {name: Memo(data, extras.get(name)) for name, data in memos.items()}
            self.stats = StatIndex(stats)

    def memo(self, name: str) -> Memo:
        """The named memo (e.g. a derive hook's), persisted with the entries."""
        return self.memos.setdefault(name, Memo())

    def get(self, key: tuple | None, env_digest: str = "", file_digest: Callable[[str], str | None] | None = None) -> Any:
        entry = self.entries.get(key) if key is not None else None
        if entry is not None and entry[0].hold(env_digest, file_digest or (lambda rel: None)):
            self.hits += 1
            self.used.add(key)
            if len(entry) > 2:  # loaded from disk with what was derived from it: remembered once
                _adopt(entry[1], entry[2])
                self.entries[key] = entry = entry[:2]
            return entry[1]
        if key is not None:
            self.misses += 1
        return None

    def put(self, key: tuple | None, value: Any, deps: Dependencies | None = None) -> None:
        if key is None or deps is None:
            return
        if len(self.entries) >= self.limit:
            self.entries.clear()
            self.used.clear()
        self.entries[key] = (deps, value)
        self.used.add(key)
        self.dirty = True

    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def save(self) -> None:
        """Write the entries this process used (what the checkout holds now) atomically."""
        if not (self.path and (self.dirty or any(m.dirty for m in self.memos.values()) or (self.stats and self.stats.changed))):
            return
        kept = {k: (*v[:2], _extras(v[1])) for k, v in self.entries.items() if k in self.used}
        memos = {name: {k: _deferring(v, name in _REBUILT_FROM_DATA) for k, v in memo.kept().items()} for name, memo in self.memos.items()}
        extras = {name: {k: found for k, v in kept_memo.items() if (found := _extras(v))} for name, kept_memo in memos.items()}
        with paused():  # no cycles to find among these objects: the collector only costs time here
            stats = self.stats.seen if self.stats is not None else {}
            payload = modelpickle.dumps((FORMAT, kept, memos, extras, stats))  # models unpickle without __setstate__
        header = MAGIC + f"{FORMAT} {code_digest()} {hashlib.sha256(payload).hexdigest()}\n".encode()
        atomic_write_bytes(self.path, header + payload, durable=False)  # a cache: losing it costs one slow plan
        self.dirty = False
        for memo in self.memos.values():
            memo.dirty = False
        if self.stats is not None:
            self.stats.changed = False


def load(path: Path) -> tuple[dict, dict[str, dict], dict[str, dict], dict[str, tuple]]:
    """(entries, memos, what was derived from the memos' values, the stat index) of a cache file;
    empty for a missing, truncated, corrupt, foreign or stale one."""
    empty: tuple[dict, dict[str, dict], dict[str, dict], dict[str, tuple]] = ({}, {}, {}, {})
    try:
        blob = path.read_bytes()
    except OSError:
        return empty
    if not blob.startswith(MAGIC):
        return empty
    end = blob.find(b"\n", len(MAGIC))
    if end < 0:
        return empty
    payload = memoryview(blob)[end + 1:]  # not a copy: the file is ~10 MB, and every copy is page faults
    try:
        version, code, checksum = blob[len(MAGIC):end].decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        return empty
    if version != str(FORMAT) or code != code_digest() or hashlib.sha256(payload).hexdigest() != checksum:
        return empty
    try:
        with paused(freeze=True):  # ~10⁵ long-lived objects: see daemon/shared/gcpause.py
            fmt, entries, memos, extras, stats = pickle.loads(payload)
    except Exception:  # checksummed, so only a file written by a different build gets here
        return empty
    if fmt != FORMAT or not all(isinstance(part, dict) for part in (entries, memos, extras, stats)):
        return empty
    return entries, memos, extras, stats
