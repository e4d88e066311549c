"""Small-size run of the dashboards benchmark, so it keeps working (not a timed test)."""

from __future__ import annotations

import math

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_dashboards_small(capsys):
    from tests.bench.bench_dashboards import main

    figures = main(["--size", "3"])
    out = capsys.readouterr().out
    assert "ratio generate/json.dumps" in out and "ratio apply/raw" in out
    assert figures["dashboards"] == 7 and figures["queries"] > 50
    for key in ("generate_s", "dumps_s", "publish_s", "observe_s", "raw_s"):
        assert 0 < figures[key] < 60 and math.isfinite(figures[key]), key
    assert figures["generate_s"] > figures["dumps_s"], "validating and rendering costs more than serialising"
