"""CI run of the TLS benchmark at a tiny size: both services answered, no request failed, and every
figure is printed as min <= median <= max over 3 rounds (correctness, not timing)."""

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
def test_bench_tls_prints_every_figure_of_a_sound_run():
    result = subprocess.run([sys.executable, str(REPO / "tests" / "bench" / "bench_tls.py"), "--size", "1", "--rounds", "3",
                             "--connections-per-round", "10"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^rounds: 3 ", out, re.M), out
    assert "both services answered: yes; failed requests: 0" in out, out
    for label in ("http  keep-alive p50 ms at c1:", "https keep-alive p50 ms at c1:", "http  new-connection p50 ms:",
                  "https new-connection p50 ms:", "TLS added p50 ms keep-alive (target <= 1 ms):",
                  "TLS added p50 ms new connection (handshake included):", "ratio keep-alive p50 https/http:"):
        match = re.search(re.escape(label) + r"\s*" + SPREAD, out)
        assert match, f"missing {label!r} in:\n{out}"
        low, mid, high = map(float, match.groups())
        assert low <= mid <= high, (label, low, mid, high)
    assert float(re.search(r"https keep-alive p50 ms at c1: " + SPREAD, out).group(1)) > 0
