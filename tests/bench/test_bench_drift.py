"""Small-size run of the drift benchmark, so it keeps working (not a timed test): the numpy check and the
one-pass DuckDB baseline compute the same PSI, and exactly the shifted features drift."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_drift_small(capsys):
    from tests.bench.bench_drift import main

    figures = main(["--rows", "5000", "--features", "6", "--runs", "1"])
    out = capsys.readouterr().out
    assert "ratio to duckdb" in out
    assert figures["rows"] == 5000 and figures["columns"] == 6
    assert figures["drifted"] == ["f01", "f03", "f05"]  # the odd features are shifted by half a std
    assert figures["max_diff"] < 1e-9
