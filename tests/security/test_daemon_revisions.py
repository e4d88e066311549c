"""Nothing a commit contains may crash the daemon: whatever checking out, composing or checking a
revision raises, the daemon rejects that revision like any invalid one and keeps the last valid one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.runtime.daemon import Daemon

GOOD = "source:\n  type: synthetic\n  rows: 3\n  columns: [{name: id, kind: sequence}]\n"


def _daemon(spec_repo, tmp_path: Path) -> Daemon:
    home = tmp_path / "home"
    home.mkdir()
    return Daemon(home, str(spec_repo.path), "main", "dev", use_prefect=False)


@pytest.mark.parametrize("error", [RuntimeError("boom"), OSError(28, "No space left on device"), RecursionError(), MemoryError()])
def test_any_exception_while_reading_a_revision_rejects_it(spec_repo, tmp_path, monkeypatch, error):
    spec_repo.write("specs/tables/t.yaml", GOOD)
    good = spec_repo.commit("good")
    daemon = _daemon(spec_repo, tmp_path)
    assert daemon._validated(good) is not None
    spec_repo.write("specs/tables/u.yaml", GOOD)
    bad = spec_repo.commit("a revision whose reading raises")

    def explode(sha: str):
        raise error

    monkeypatch.setattr(daemon.source, "checkout", explode)
    assert daemon._validated(bad) is None
    assert daemon.state.rejected["revision"] == bad
    assert f"<revision {bad[:12]}>: cannot be read: {type(error).__name__}" in daemon.state.rejected["errors"][0]
    assert daemon.last_valid is not None and daemon.last_valid.revision == good
    events = [e for e in daemon.journal.read() if e.get("type") == "RevisionRejected"]
    assert events and events[-1]["revision"] == bad


def test_a_commit_with_an_absolute_symlink_is_rejected_not_fatal(spec_repo, tmp_path):
    spec_repo.write("specs/tables/t.yaml", GOOD)
    good = spec_repo.commit("good")
    daemon = _daemon(spec_repo, tmp_path)
    assert daemon._validated(good) is not None
    os.symlink("/etc/passwd", spec_repo.path / "specs/tables/evil.yaml")
    bad = spec_repo.commit("absolute symlink")
    assert daemon._validated(bad) is None
    assert daemon.state.rejected["revision"] == bad
    assert any(e.startswith("specs/tables/evil.yaml: symlink to '/etc/passwd' not allowed") for e in daemon.state.rejected["errors"])
    assert daemon.last_valid.revision == good
