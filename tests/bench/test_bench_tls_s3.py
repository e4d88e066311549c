"""CI run of the S3-over-TLS benchmark at a tiny size: both endpoints served every round, what was written
read back, every figure printed as min <= median <= max (correctness, not timing)."""

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
def test_bench_tls_s3_prints_every_figure_of_a_sound_run():
    result = subprocess.run([sys.executable, str(REPO / "tests" / "bench" / "bench_tls_s3.py"), "--size", "1", "--rounds", "3"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^rounds: 3 size: 1 ", out, re.M), out
    assert "every round read back what it wrote: yes" in out, out
    for scheme in ("http ", "https"):
        for what in ("GET p50 ms:", "Delta append ms:", "Delta read ms:"):
            match = re.search(re.escape(f"{scheme} {what}") + r"\s*" + SPREAD, out)
            assert match, f"missing {scheme} {what} in:\n{out}"
            low, mid, high = map(float, match.groups())
            assert 0 < low <= mid <= high, (scheme, what, low, mid, high)
    for what in ("GET p50 ms", "Delta append ms", "Delta read ms"):
        assert re.search(re.escape(f"ratio {what} https/http:") + r"\s*" + SPREAD, out), out
