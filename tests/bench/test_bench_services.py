"""CI run of the services benchmark at a tiny size: the ratio lines are printed and sane."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.bench
@pytest.mark.integration
def test_bench_services_prints_sane_ratios():
    result = subprocess.run([sys.executable, str(REPO / "tests" / "bench" / "bench_services.py"), "--size", "1"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    def number(pattern: str) -> float:
        match = re.search(pattern, out)
        assert match, f"missing line {pattern!r} in:\n{out}"
        return float(match.group(1))

    throughput = number(r"ratio throughput ab/single: ([\d.]+)")
    batching = number(r"ratio batching on/off at c32: ([\d.]+)")
    added_p50 = number(r"added p50 ms at c1: (-?[\d.]+)")
    swap = number(r"swap to 100% seconds: ([\d.]+)")
    assert 0.05 < throughput < 50 and 0.05 < batching < 50
    assert -1000 < added_p50 < 1000
    assert 0 <= swap <= 5.0  # the target for a rollback to reach all traffic
    assert number(r"failed requests: (\d+)") == 0
