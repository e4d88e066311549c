"""Small-size run of the authorisation benchmark, so it keeps working (correctness, not timing)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_access_small(capsys):
    from tests.bench.bench_access import main

    figures = main(["--requests", "400", "--repeat", "3"])
    out = capsys.readouterr().out
    assert out.count("ratio = ") == 2
    assert all(value > 0 for value in figures.values())
