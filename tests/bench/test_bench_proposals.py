"""Small-size run of the online-promotion benchmark, so it keeps working (not a timed test)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_proposals_small(capsys):
    from tests.bench.bench_proposals import main

    figures = main(["--size", "200000", "--repeat", "1"])
    out = capsys.readouterr().out
    assert "ratio propose/baseline (wall, median)" in out and "winner: challenger" in out
    assert figures["proposed"] == 1.0 and figures["idempotent"] == 1.0  # one branch per run, none on the re-run
