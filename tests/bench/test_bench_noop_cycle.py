"""Small-size run of the no-op cycle benchmark: every cycle plans nothing, the retrain is planned after new
rows (the benchmark asserts both), and the figures are printed as documented (not tuned here)."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_noop_cycle_small(capsys):
    from tests.bench.bench_noop_cycle import main

    figures = main(["--sizes", "20,40", "--repeat", "3"])
    out = capsys.readouterr().out
    assert re.search(r"20 tables \(\d+ resources\): cycle min/median/max .* ms per 1,000 tables", out), out
    assert re.search(r"per-table cost at 40 vs 20: ratio [0-9.]+ \(1.00 = linear\)", out), out
    assert "refresh committed → model retrain planned" in out
    assert figures["cycle_40_s"] > 0 and figures["linearity_40"] > 0 and figures["refresh_to_retrain_planned_s"] > 0
