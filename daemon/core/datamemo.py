"""Text derived from one normalised spec document (its canonical JSON, content digests), computed once.

A plan serialises every document's data more than once: its fingerprint (canonical JSON of the shaping
spec), the generated dashboard's content digest, and the same again for every generated dashboard —
~40 % of a warm `specd plan` of 1,000 specs. Normalised data is immutable once composed (the compose
cache already hands the same object to every cycle), so what is derived from it is remembered per
object here, by identity (the entry holds the object, so its id cannot be reused meanwhile), and the
compose cache stores it with the document on disk (`export`/`adopt`), so a second `specd plan` process
does not serialise the documents again either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MEMO: dict[int, tuple[Any, dict[str, str]]] = {}  # id(data) -> (data, {name: text})
LIMIT = 50_000  # objects; the whole memo is dropped at the limit (a long-lived daemon keeps only what it uses)


def text(data: Any, name: str, make: Callable[[], str]) -> str:
    """`make()` for this data object, once per (object, name)."""
    entry = _MEMO.get(id(data))
    if entry is None or entry[0] is not data:
        if len(_MEMO) >= LIMIT:
            _MEMO.clear()
        entry = _MEMO[id(data)] = (data, {})
    values = entry[1]
    value = values.get(name)
    if value is None:
        value = values[name] = make()
    return value


def get(data: Any, name: str) -> str | None:
    entry = _MEMO.get(id(data))
    return entry[1].get(name) if entry is not None and entry[0] is data else None


def put(data: Any, name: str, value: str) -> None:
    """Remember (or replace) one value for this object."""
    entry = _MEMO.get(id(data))
    if entry is None or entry[0] is not data:
        if len(_MEMO) >= LIMIT:
            _MEMO.clear()
        entry = _MEMO[id(data)] = (data, {})
    entry[1][name] = value


def export(data: Any) -> dict[str, str] | None:
    """What is remembered for this object (to store with it), or None; names starting with `_` stay in
    this process (large texts that only save work within it)."""
    entry = _MEMO.get(id(data))
    if entry is None or entry[0] is not data:
        return None
    return {name: value for name, value in entry[1].items() if not name.startswith("_")} or None


def adopt(data: Any, values: dict[str, str] | None) -> None:
    """Remember values stored with this object (by `export`, in an earlier process)."""
    if not values:
        return
    entry = _MEMO.get(id(data))
    if entry is None or entry[0] is not data:
        if len(_MEMO) >= LIMIT:
            _MEMO.clear()
        _MEMO[id(data)] = (data, dict(values))
    else:
        for name, value in values.items():
            entry[1].setdefault(name, value)
