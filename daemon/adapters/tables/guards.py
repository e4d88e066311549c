"""Validate-time guards of a table's source that need the checkout: `_target_` and file paths.

The schema already refuses absolute paths, `~` and `..`; what it cannot see is the tree: a glob or a
path whose match is a symlink to `/etc/passwd`, or a `_target_` that is importable from an allowlisted
module without being defined there. Both are checked here, at validate/plan time, with the same rules
the build applies (flows.tables.sources.files.resolve_files, flows.tables.sources.callable.resolve).
"""

from __future__ import annotations

import glob as globlib
import itertools
from pathlib import Path
from typing import Any

MAX_MATCHES = 10_000  # a glob is checked on its first matches only (validate stays fast)


def source_problems(spec: Any, data_root: Path, prefixes: tuple[str, ...]) -> list[tuple[tuple, str]]:
    source = spec.source
    problems: list[tuple[tuple, str]] = []
    if source.type == "callable":
        from flows.tables.sources.callable import static_problem

        problem = static_problem(source.target, prefixes)
        if problem:
            problems.append((("source", "_target_"), problem))
    elif source.type == "sql" and source.url.startswith("sqlite:///"):
        path = data_root / source.url.removeprefix("sqlite:///")
        if (path.exists() or path.is_symlink()) and not path.resolve().is_relative_to(data_root.resolve()):
            problems.append((("source", "url"), f"SQLite database {source.url.removeprefix('sqlite:///')!r} resolves outside the data root"))
    elif source.type == "file" and "://" not in source.path:
        root = data_root.resolve()
        pattern = str(root / source.path)
        matches = globlib.iglob(pattern, recursive=True) if globlib.has_magic(source.path) else iter([pattern])
        for match in itertools.islice(matches, MAX_MATCHES):
            path = Path(match)
            if not path.exists() and not path.is_symlink():
                continue  # a missing input is the build's error (data may arrive later)
            try:
                resolved = path.resolve(strict=True)
            except (OSError, RuntimeError):
                problems.append((("source", "path"), f"{source.path!r} matches {match!r}, a dangling or looping symlink"))
                continue
            if not resolved.is_relative_to(root):
                shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else match
                problems.append((("source", "path"), f"{source.path!r} matches {shown!r}, which resolves outside the data root"))
    return problems
