"""Small-size run of the online-features benchmark, so it keeps working (not a timed test)."""

from __future__ import annotations

import math

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_online_small(capsys):
    from tests.bench.bench_online import main

    figures = main(["--rows", "3000", "--features", "5", "--runs", "1", "--lookups", "50"])
    out = capsys.readouterr().out
    assert "ratio rate specd/plain" in out and "ratio delta/redis p99" in out
    assert figures["incremental_written"] == 30  # 1 % of the rows changed: only those are written
    for key in ("ours_s", "plain_s", "incremental_s", "redis HMGET", "service lookup", "delta point read"):
        assert 0 < figures[key] < 60_000 and math.isfinite(figures[key]), key
