"""Links stay in their roots: symlinks in a spec tree are checked before any file behind them is read.

A commit may add `specs/tables/x.yaml -> /etc/passwd` or `specs/data -> /`; following such a link would
read (and echo in error messages, or copy into a Delta table) host files the spec language never grants.
So before compose reads anything, every symlink under `specs/` and `environments/` (and under the data
root when it is a folder of its own) must resolve inside that same folder; one that does not, or that
dangles, is a validation error naming the link, and nothing behind it is read. The git source (which
extracts a commit with tarfile's `data` filter) leaves such links out of the checkout and records them
in `UNSAFE_LINKS`, so they are reported here in the same words.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from daemon.shared.errors import SpecIssue

UNSAFE_LINKS = ".specd-unsafe-links.json"  # written by GitSource.checkout next to the extracted tree


def link_escapes(link: Path, root: Path) -> str | None:
    """Why the symlink `link` is not allowed under `root`, or None."""
    try:
        target = os.readlink(link)
    except OSError as exc:
        return f"cannot read the symlink: {exc.strerror}"
    try:
        resolved = link.resolve()
    except (OSError, RuntimeError):
        return f"symlink to {target!r} does not resolve (a loop)"
    if not resolved.is_relative_to(root.resolve()):
        return f"symlink to {target!r} resolves outside {root.name}/"
    if not resolved.exists():
        return f"symlink to {target!r} does not resolve (dangling)"
    return None


def tree_issues(repo: Path, roots: list[str]) -> tuple[list[SpecIssue], set[Path]]:
    """(issues, paths to skip) for every bad symlink under each of `roots` (repo-relative folders)."""
    issues: list[SpecIssue] = []
    bad: set[Path] = set()
    repo = Path(repo)
    marker = repo / UNSAFE_LINKS
    if marker.is_file() and not marker.is_symlink():
        try:
            for entry in json.loads(marker.read_text(encoding="utf-8")):
                issues.append(SpecIssue(str(entry["path"]), 0, "", str(entry["message"])))
        except (OSError, ValueError, KeyError, TypeError):
            issues.append(SpecIssue(UNSAFE_LINKS, 0, "", "unreadable record of links left out of the checkout"))
    for rel in roots:
        top = repo / rel
        if top.is_symlink():
            issues.append(SpecIssue(rel, 0, "", f"{rel}/ must be a folder, not a symlink (to {os.readlink(top)!r})"))
            bad.add(top)
            continue
        if not top.is_dir():
            continue
        for directory, dirs, files in os.walk(top, followlinks=False):
            here = Path(directory)
            for name in [*dirs, *files]:
                path = here / name
                if not path.is_symlink():
                    continue
                problem = link_escapes(path, top)
                if problem:
                    issues.append(SpecIssue(path.relative_to(repo).as_posix(), 0, "", problem))
                    bad.add(path)
    return issues, bad


def skipped(path: Path, bad: set[Path]) -> bool:
    """Whether `path` is, or lies under, one of the rejected links."""
    return any(path == b or path.is_relative_to(b) for b in bad)
