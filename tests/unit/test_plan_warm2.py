"""The second `specd plan`'s cheaper paths give what the paths they replace gave.

File sources' input digest (one stat and one realpath per file, the roots resolved once), DuckDB's
version read from its dist-info folder (no importlib.metadata), and the exit freeze of a short-lived
command only when main() is the program.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from pydantic import BaseModel, PrivateAttr

from daemon.schema.table import TableSpec
from flows.tables.sources import SourceContext, SourceError
from flows.tables.sources.files import digest_files, input_digest, resolve_files


class Inner(BaseModel):
    n: int = 1
    _seen: int = PrivateAttr(default=0)


class Outer(BaseModel, extra="allow"):
    inner: Inner = Inner()
    items: list[Inner] = []


class Own(BaseModel):
    x: int = 0

    def __getstate__(self):  # a pickling of its own is kept
        return {**super().__getstate__(), "__dict__": {"x": 99}}


def _source(path: str):
    return TableSpec.model_validate({"source": {"type": "file", "path": path, "format": "csv"}}).source


def test_input_digest_is_the_digest_of_the_resolved_files(tmp_path: Path) -> None:
    repo, data = tmp_path / "repo", tmp_path / "repo" / "data"
    data.mkdir(parents=True)
    for name in ("b.csv", "a.csv"):
        (data / name).write_text(f"x\n{name}\n")
    (data / "sub").mkdir()  # a directory the glob matches is no file
    (data / "sub.csv").mkdir()
    (data / "link.csv").symlink_to(data / "a.csv")  # inside the root: allowed
    ctx = SourceContext("orders", repo, repo)
    spec = _source("data/*.csv")
    files = resolve_files(spec, ctx)
    assert [p.name for p in files] == ["a.csv", "b.csv", "link.csv"]
    before = input_digest(spec, ctx)
    assert before == digest_files(files, repo.resolve(), repo.resolve())
    (data / "b.csv").write_text("x\nchanged\n")  # inside the checkout: by content
    assert input_digest(spec, ctx) == digest_files(files, repo.resolve(), repo.resolve()) != before
    one = _source("data/a.csv")
    assert input_digest(one, ctx) == digest_files([data / "a.csv"], repo.resolve(), repo.resolve())
    assert input_digest(_source("data/none.csv"), ctx) == "missing"
    assert input_digest(_source("data/sub.csv"), ctx) == "missing"  # a directory is not a file


def test_a_match_resolving_outside_the_root_is_refused_and_digests_as_missing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.csv").write_text("x\n1\n")
    (root / "evil.csv").symlink_to(tmp_path / "secret.csv")
    ctx = SourceContext("orders", root, root)
    with pytest.raises(SourceError, match=r"table orders: source.path 'evil.csv' resolves outside the data root"):
        resolve_files(_source("evil.csv"), ctx)
    assert input_digest(_source("evil.csv"), ctx) == "missing"


def test_a_stat_error_other_than_no_file_is_raised_as_path_is_file_raised_it(tmp_path: Path) -> None:
    name = "x" * 300 + ".csv"  # ENAMETOOLONG: not one of the errors Path.is_file takes for "no file"
    with pytest.raises(OSError) as before:
        (tmp_path / name).is_file()
    with pytest.raises(OSError) as now:
        resolve_files(_source(name), SourceContext("orders", tmp_path, tmp_path))
    assert now.value.errno == before.value.errno


def test_duckdb_version_is_the_installed_distribution() -> None:
    from importlib.metadata import version

    from flows.tables.expressions import _duckdb_version

    assert _duckdb_version() == f"duckdb-{version('duckdb')}"


def test_exit_freeze_only_when_main_is_the_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.cli import main as cli

    frozen: list[int] = []
    monkeypatch.setattr(cli, "_exit_lean", lambda: frozen.append(1))
    monkeypatch.setattr(gc, "freeze", lambda: None)  # _tune_gc's own freeze: not what is counted here
    home = tmp_path / "home"
    argv = ["validate", "--repo", str(tmp_path / "none"), "--home", str(home)]
    cli.main(argv)
    assert frozen == []  # a caller that goes on in the same process
    monkeypatch.setattr("sys.argv", ["specd", *argv])
    cli.main()
    assert frozen == [1]


def test_model_pickles_restore_what_pydantics_own_pickling_restores() -> None:
    import pickle

    from daemon.core import modelpickle

    modelpickle._TABLE = None  # these classes are new: the table is built again
    value = Outer.model_validate({"inner": {"n": 2}, "items": [{"n": 3}], "other": [1, 2]})
    value.inner._seen = 7
    spec = TableSpec.model_validate({"source": {"type": "file", "path": "data/x.csv", "format": "csv"}, "description": "d"})
    for original in (value, spec, Own(x=1)):
        mine, theirs = pickle.loads(modelpickle.dumps(original)), pickle.loads(pickle.dumps(original))
        assert mine == theirs and type(mine) is type(theirs)
        assert mine.model_fields_set == theirs.model_fields_set
        assert mine.__pydantic_extra__ == theirs.__pydantic_extra__
        assert mine.__pydantic_private__ == theirs.__pydantic_private__
    assert b"_restore" in modelpickle.dumps(spec) and b"_restore" not in modelpickle.dumps(Own(x=1))
    restored = pickle.loads(modelpickle.dumps(value))
    assert restored.inner._seen == 7 and restored.other == [1, 2]
    assert restored.model_dump() == value.model_dump()
    restored.inner.n = 5  # still a working model: assignment and serialisation as before
    assert restored.model_dump()["inner"]["n"] == 5
    modelpickle._TABLE = None


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The spec files `compose` reads from now on (the environment's overlay aside)."""
    from daemon.core import compose as composing

    read: list[str] = []
    real = composing.read_text

    def counting(path, *args, **kwargs):
        if "/specs/" in str(path):
            read.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(composing, "read_text", counting)
    return read


def test_the_stat_index_skips_unchanged_files_and_catches_a_same_size_same_mtime_edit(
        spec_repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.core import statindex
    from daemon.core.compose import compose
    from daemon.core.compose_cache import ComposeCache
    from tests.unit.test_compose_cache import write_repo

    write_repo(spec_repo)
    monkeypatch.setattr(statindex, "MARGIN_NS", 0)  # the files were written just now: trust them at once
    path = tmp_path / "cache" / "compose-dev.bin"
    first = ComposeCache(path)
    docs = {d.name: d.data for d in compose(spec_repo.path, "dev", cache=first).docs if d.kind == "table"}
    first.save()
    reads = _reads(monkeypatch)
    second = ComposeCache(path)
    assert {d.name: d.data for d in compose(spec_repo.path, "dev", cache=second).docs if d.kind == "table"} == docs
    assert reads == [] and second.misses == 0  # every spec file and preset known by its stat: none read
    second.save()

    target = spec_repo.path / "specs" / "tables" / "t0.yaml"
    before = target.stat()
    text = target.read_text()
    edited = text.replace("t0 in", "T0 in")
    assert len(edited) == len(text)
    target.write_text(edited)  # same size, and the mtime put back: only the ctime tells
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    third = ComposeCache(path)
    now = {d.name: d.data for d in compose(spec_repo.path, "dev", cache=third).docs if d.kind == "table"}
    assert now["t0"]["description"] == "T0 in dev"
    assert reads == ["t0.yaml", "bronze.yaml"]  # the edited file, and its preset to compose it again
    assert {k: v for k, v in now.items() if k != "t0"} == {k: v for k, v in docs.items() if k != "t0"}


def test_files_changed_within_the_margin_are_hashed_every_time(spec_repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.core.compose import compose
    from daemon.core.compose_cache import ComposeCache
    from tests.unit.test_compose_cache import write_repo

    write_repo(spec_repo)  # written now: within the one-second margin
    path = tmp_path / "cache" / "compose-dev.bin"
    first = ComposeCache(path)
    compose(spec_repo.path, "dev", cache=first)
    first.save()
    assert first.stats is not None and first.stats.seen == {}
    reads = _reads(monkeypatch)
    second = ComposeCache(path)
    compose(spec_repo.path, "dev", cache=second)
    assert second.hits == 8 and len(reads) >= 7  # hits by content, every file read and hashed


def test_a_damaged_stat_index_is_only_a_miss(tmp_path: Path) -> None:
    import hashlib
    import pickle

    from daemon.core import compose_cache

    path = tmp_path / "compose-dev.bin"
    payload = pickle.dumps((compose_cache.FORMAT, {}, {}, {}, ["not", "a", "dict"]))
    header = compose_cache.MAGIC + f"{compose_cache.FORMAT} {compose_cache.code_digest()} {hashlib.sha256(payload).hexdigest()}\n".encode()
    path.write_bytes(header + payload)
    assert compose_cache.load(path) == ({}, {}, {}, {})
    cache = compose_cache.ComposeCache(path)
    assert cache.stats is not None and cache.stats.known == {}
