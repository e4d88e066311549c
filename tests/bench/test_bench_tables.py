"""Small-size run of the tables benchmark (CI): the ratio lines are printed and the figures are sane."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_tables_small(capsys):
    from tests.bench.bench_tables import main

    figures = main(["--size", "200000"])
    out = capsys.readouterr().out
    assert out.count("ratio pipeline/write_table = ") == 2 and "ratio rss large/small = " in out
    assert "ratio pipeline+dedupe/write_table = " in out and "ratio dedupe qualify/window = " in out
    assert figures["large"]["rows"] == 200_000 and 0 < figures["large"]["written"] <= 200_000
    assert 0 < figures["ratio"] < 5 and 0 < figures["dedupe_ratio"] < 5 and figures["dedupe_speedup"] > 0
    dedupe = figures["dedupe"]
    assert 0 < dedupe["deduplicated"] < 0.05 * dedupe["rows"]  # ~1 % repeated keys were removed
    assert 0.95 * dedupe["rows"] < figures["dedupe_sql"]["kept"] < dedupe["rows"]  # one row per key (no filter there)
    assert figures["rss_growth"] < 2.0  # 4x the input must not mean 4x the memory
