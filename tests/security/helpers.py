"""Shared by the security tests: validate a spec tree as `specd validate` does, and list its errors."""

from __future__ import annotations

import os
from pathlib import Path

from daemon.runtime.reconcile import check, context_for, load_desired, make_adapters
from daemon.shared.errors import SpecErrors

TABLE_HEAD = "source:\n  type: table\n  inputs: [raw]\n"
RAW_TABLE = "source:\n  type: file\n  path: specs/data/raw.csv\n  format: csv\nschema:\n  columns:\n    - {name: id, type: int64}\n    - {name: amount, type: float64}\n    - {name: note, type: string}\n"


def validate_errors(repo: Path, home: Path, env: str = "dev") -> list[str]:
    """Every error `specd validate` would print for the tree at `repo` ([] when it is valid)."""
    try:
        desired = load_desired(repo, env, "worktree")
        check(make_adapters(context_for(desired, home)), desired.graph)
    except SpecErrors as exc:
        return [str(issue) for issue in exc.issues]
    return []


def files_outside(root: Path, since: float, allowed: list[Path]) -> list[str]:
    """Files under `root` modified after `since` that are not under one of `allowed`."""
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            try:
                if path.stat().st_mtime >= since and not any(path.is_relative_to(a) for a in allowed):
                    found.append(str(path))
            except OSError:
                continue
    return found
