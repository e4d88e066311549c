"""Fingerprints and dashboard digests derived once per document (`daemon.core.datamemo`): byte for byte
what `fingerprint` computes, and carried by the compose cache file into the next process."""

from __future__ import annotations

import pytest

from daemon.core import datamemo, graph
from daemon.core.compose_cache import ComposeCache
from daemon.core.graph import doc_fingerprint, fingerprint, shaping_spec
from daemon.runtime.reconcile import load_desired

CASES = [
    ("table", "orders", {"source": {"sql": "select 1"}, "description": "metadata only", "z": {"é": [1, 2.5, None, True]}, "b": "ü\u2028\""},
     {"table/raw": "f1", "model/a": "f0"}, "table/3"),
    ("model", "m-1", {}, {}, "model/1"),
    ("dashboard", "d", {"rows": [{"k": float("nan"), "x": {"b": 1, "a": [{}]}}]}, {"x": "y"}, "dashboard/1"),
]


@pytest.mark.parametrize(("kind", "name", "data", "upstream", "code"), CASES)
def test_doc_fingerprint_is_fingerprint_byte_for_byte(kind, name, data, upstream, code) -> None:
    expected = fingerprint(kind, name, shaping_spec(kind, data), upstream, code)
    assert doc_fingerprint(kind, name, data, upstream, code) == expected
    assert doc_fingerprint(kind, name, data, upstream, code) == expected  # remembered
    other = {**upstream, "table/new": "f9"}  # an upstream changed: a different fingerprint, not the remembered one
    assert doc_fingerprint(kind, name, data, other, code) == fingerprint(kind, name, shaping_spec(kind, data), other, code) != expected


def test_a_second_process_reuses_the_fingerprints_from_the_cache_file(spec_repo, tmp_path, monkeypatch) -> None:
    spec_repo.write("specs/tables/raw.yaml", "source: {type: file, path: data/raw.csv, format: csv}\n")
    spec_repo.write("specs/tables/child.yaml", "source:\n  type: table\n  inputs: [raw]\n  sql: select * from raw\n")
    spec_repo.commit("two tables")
    path = tmp_path / "compose.bin"
    cache = ComposeCache(path)
    first = load_desired(spec_repo.path, "dev", "r1", cache=cache)
    cache.save()
    expected = {r.key: r.fingerprint for r in first.graph.resources}
    assert {"table/raw", "table/child", "dashboard/table-raw"} <= set(expected)

    datamemo._MEMO.clear()  # a new process: only the cache file remembers
    monkeypatch.setattr(graph, "shaping_spec", lambda *a: pytest.fail("serialised a cached document again"))
    again = load_desired(spec_repo.path, "dev", "r1", cache=ComposeCache(path))
    assert {r.key: r.fingerprint for r in again.graph.resources} == expected

    spec_repo.write("specs/tables/raw.yaml", "source: {type: file, path: data/other.csv, format: csv}\n")
    monkeypatch.undo()
    changed = {r.key: r.fingerprint for r in load_desired(spec_repo.path, "dev", "r2", cache=ComposeCache(path)).graph.resources}
    assert changed["table/raw"] != expected["table/raw"]
    datamemo._MEMO.clear()
    assert changed == {r.key: r.fingerprint for r in load_desired(spec_repo.path, "dev", "r2").graph.resources}  # as with no cache at all
