"""daemon.shared.fsio: the one atomic write (mode, no temp left behind on failure) and read-json-or-None."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from daemon.shared.fsio import atomic_write_json, atomic_write_text, read_json


def test_atomic_json_replaces_whole_with_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    first = os.stat(path).st_ino
    atomic_write_json(path, {"b": 2})
    assert read_json(path) == {"b": 2}
    assert os.stat(path).st_ino != first  # a new file renamed over the old one: readers poll by identity
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    atomic_write_text(tmp_path / "grafana.yaml", "x: 1\n", mode=0o644, durable=False)
    assert stat.S_IMODE(os.stat(tmp_path / "grafana.yaml").st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    atomic_write_json(path, {"ok": True})

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_write_json(path, {"ok": False})
    monkeypatch.undo()
    assert read_json(path) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


@pytest.mark.parametrize("content", [None, "", '{"torn": ', "[1, 2]", "\xff"])
def test_read_json_is_none_for_missing_torn_or_not_an_object(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "x.json"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    assert read_json(path) is None
