"""Small-size run of the `specd ab` benchmark, so it keeps working (not a timed test)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_ab_small(capsys):
    from tests.bench.bench_ab import main

    figures = main(["--size", "20000", "--repeat", "1"])
    out = capsys.readouterr().out
    assert "ratio ab/baseline (wall, median)" in out
    assert figures["same_rows"] == 1.0  # the analysis counts exactly the rows the plain query counts
