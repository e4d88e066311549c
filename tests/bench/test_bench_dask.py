"""Small-size run of the Dask engine benchmark (CI): both engines build the same rows and digest."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.timeout(120)]


def test_bench_dask_small(capsys):
    from tests.bench.bench_dask import main

    figures = main(["--rows", "8000", "--runs", "1", "--overhead-parts", "4", "--workers", "1"])  # 2 workers: tests/integration/test_tables_dask.py
    out = capsys.readouterr().out
    assert "ratio dask/duckdb wall = " in out and "per-partition overhead s (4 vs 1 partitions" in out
    assert figures["same"] == [True] and figures["rows_written"] > 0  # same rows and digest from both engines
    assert all(v > 0 for v in figures["ratios"].values())
