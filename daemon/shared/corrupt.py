"""A state file that cannot be read is a fact about one resource, reported with the file's name.

specd reads its live state back from files it (or Delta, or BentoML) wrote: Delta commit logs, routing
files, model releases, status files, the journal. A truncated or garbled one must not surface as a bare
`JSONDecodeError` that stops `plan` and every other resource with it. Readers raise `CorruptState`,
which names the file and what is wrong with it; observers turn it into a Degraded observation of that
resource alone (`daemon.runtime.guard` does so generically for any adapter that lets one escape).

Import-light (stdlib only): the engines' readers (flows, bentos) raise it too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class CorruptState(ValueError):
    """A state file exists but cannot be read as what it should be."""

    def __init__(self, path: str | os.PathLike, detail: str):
        self.path = str(path)
        self.detail = detail
        super().__init__(f"cannot read {self.path}: {detail}")


def read_json(path: str | os.PathLike) -> Any | None:
    """The parsed JSON of a state file; None when it does not exist; CorruptState when it is unreadable
    (truncated, garbled, not UTF-8, empty)."""
    try:
        raw = Path(path).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise CorruptState(path, exc.strerror or str(exc)) from None
    if not raw.strip():
        raise CorruptState(path, "the file is empty (truncated?)")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise CorruptState(path, f"not valid JSON ({describe(exc)})") from None


def describe(exc: BaseException) -> str:
    """A short reason for a parse error: JSON's own 'line 1 column 40 (char 39)' message, first line only."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
