"""Table expression checks: one DuckDB query for a whole repository, verdicts kept on disk and reused."""

from __future__ import annotations

import pytest

from daemon.schema.table import TableSpec
from flows.tables import expressions


def spec(where: str, column: str) -> TableSpec:
    return TableSpec.model_validate({
        "layer": "gold",
        "source": {"type": "table", "inputs": ["up"]},
        "clean": {"where": where},
        "features": {"columns": {"x": column}},
    })


@pytest.fixture(autouse=True)
def fresh_memos(monkeypatch):
    monkeypatch.setattr(expressions, "_VERDICTS", {})
    monkeypatch.setattr(expressions, "_TREES", {})


def test_many_specs_give_what_one_by_one_gives(tmp_path):
    specs = [spec("value > 1", "value * 2"), spec("value >", "value * * 2"), spec("a = 'x'", "CAST(a AS BIGINT)")]
    one_by_one = [expressions.check_table_expressions(s) for s in specs]
    expressions._VERDICTS.clear()
    expressions._TREES.clear()
    assert expressions.check_many_table_expressions(specs, tmp_path / "v.json") == one_by_one
    assert one_by_one[0] == [] and {p for p, _ in one_by_one[1]} == {("clean", "where"), ("features", "columns", "x")}


def test_stored_verdicts_need_no_duckdb(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "sql-checks.json"
    specs = [spec("value > 1", "value * 2"), spec("value >", "value * 3")]
    expected = expressions.check_many_table_expressions(specs, path)
    assert path.is_file()
    expressions._VERDICTS.clear()
    expressions._TREES.clear()

    def no_duckdb():
        raise AssertionError("DuckDB was asked again")

    monkeypatch.setattr(expressions, "_connection", no_duckdb)
    assert expressions.check_many_table_expressions(specs, path) == expected


@pytest.mark.parametrize("content", ["", "{", '{"version": "old", "verdicts": [["x", "scalar", null]]}', '[1, 2]',
                                     '{"version": null, "verdicts": 5}'])
def test_a_damaged_or_stale_verdict_file_is_ignored(tmp_path, content):
    path = tmp_path / "sql-checks.json"
    path.write_text(content)
    bad = [spec("value >", "value * 2")]
    assert [p for p, _ in expressions.check_many_table_expressions(bad, path)[0]] == [("clean", "where")]
    assert '"verdicts"' in path.read_text()  # rewritten whole
