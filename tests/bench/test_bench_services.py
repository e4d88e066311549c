"""CI run of the services benchmark at a tiny size: every figure is printed, for every server, and the
run itself was sound (same predictor behind the three baselines, no failed request, 3 rounds)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPREAD = r"min (-?[\d.]+) median (-?[\d.]+) max (-?[\d.]+)"


@pytest.mark.bench
@pytest.mark.integration
def test_bench_services_prints_every_figure_of_a_sound_run():
    result = subprocess.run([sys.executable, str(REPO / "tests" / "bench" / "bench_services.py"), "--size", "1", "--rounds", "3"],
                            cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    def spread(label: str) -> tuple[float, float, float]:
        match = re.search(re.escape(label) + r"\s*" + SPREAD, out)
        assert match, f"missing {label!r} in:\n{out}"
        low, mid, high = map(float, match.groups())
        assert low <= mid <= high, (label, low, mid, high)
        return low, mid, high

    assert re.search(r"^rounds: 3 ", out, re.M), out
    assert "same predictor bare/single: yes" in out, out
    assert "server stack of the A/B worker: loop uvloop, http httptools" in out, out
    assert spread("load average (1 min) during the runs:")[0] >= 0
    for server in ("A/B service ", "bare app    ", "single-model", "trivial-bento"):
        assert spread(f"{server} c8 req/s:")[0] > 0
        assert spread(f"{server} c8 CPU ms per request:")[0] > 0  # the right processes were measured
        spread(f"{server} c1 p50 ms:")
    for label in ("ratio throughput ab/bare at c8:", "ratio throughput ab/single at c8:", "A/B p99 ms at c1:",
                  "ratio CPU per request bare/ab at c8:", "added p50 ms at c1 (ab - single):",
                  "ratio throughput trivial-bento/bare at c8:", "ratio throughput ab/trivial-bento at c8:",
                  "ratio CPU per request bare/trivial-bento at c8:", "A/B p99 ms at c1 without the prediction log:",
                  "A/B p99 ms at c1 with batching on (the default):"):
        spread(label)
    assert spread("(target <= 10; bare app")[0] > 0
    assert re.search(r"ratio batching on/off at c32: [\d.]+", out) and re.search(r"swap to 100% seconds: [\d.]+", out)
    assert re.search(r"failed requests: (\d+)", out).group(1) == "0", out
