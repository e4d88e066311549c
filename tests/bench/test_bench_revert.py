"""Small-size run of the revert benchmark, so it keeps working (its figures are printed, not tuned here)."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.e2e]


def test_bench_revert_small(capsys, prefect_api):
    from tests.bench.bench_revert import main

    figures = main(["--size", "10", "--reverts", "1", "--threads", "2"])
    out = capsys.readouterr().out
    forward = re.search(r"commit → 100 % traffic on the new release\s+([0-9.]+) s", out)
    revert = re.search(r"commit → 100 % traffic on the restored release\s+([0-9.]+) s\s+median, max [0-9.]+ s \(target ≤ 5 s\)", out)
    ratio = re.search(r"ratio forward/revert = ([0-9.]+)x", out)
    assert forward and revert and ratio, out
    assert float(forward.group(1)) == pytest.approx(figures["forward_s"], abs=0.01)
    assert float(revert.group(1)) == pytest.approx(figures["revert_s"], abs=0.01)
    assert "of which: commit → apply started" in out
    assert figures["forward_model_s"] > 0 and 0 < figures["revert_s"] < figures["forward_s"]
    assert float(ratio.group(1)) > 1
    assert figures["requests"] > 0 and figures["failed"] == 0, out
    assert figures["retrained"] == 0, "a revert started a training or evaluation process"
