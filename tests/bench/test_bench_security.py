"""Small-size run of the hardening benchmark, so it keeps working (correctness, not timing)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_security_small(capsys):
    from tests.bench.bench_security import main

    figures = main(["--lines", "500", "--commits", "20", "--repeat", "3"])
    out = capsys.readouterr().out
    assert out.count("ratio = ") == 3
    assert all(value > 0 for value in figures.values())
