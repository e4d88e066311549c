"""CI run of the transforms benchmark at a small size: it runs, prints its ratio lines, and they are sane."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"[0-9][0-9,.]*"
SPREAD = rf"({NUMBER}) / ({NUMBER}) / ({NUMBER})"


def _spread(out: str, label: str) -> tuple[float, float, float]:
    match = re.search(rf"^{re.escape(label)}: {SPREAD}", out, re.MULTILINE)
    assert match, (label, out)
    low, median, high = (float(v.replace(",", "")) for v in match.groups())
    assert 0 < low <= median <= high, (label, out)
    return low, median, high


@pytest.mark.bench
def test_bench_tables_transforms_prints_sane_ratios() -> None:
    out = subprocess.run(
        [sys.executable, "tests/bench/bench_tables_transforms.py", "--size", "30000", "--batch", "8192", "--runs", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    for label in ("ratio transformed/plain (throughput)", "ratio privacy/plain (throughput)"):
        assert _spread(out, label)[1] <= 1.5, out  # transforms cannot be much faster than a plain copy
    assert re.search(rf"clean\+quality\+privacy: {SPREAD} rows/s \((\d+) rows out\)", out)
    rows_out = int(re.search(r"\((\d+) rows out\)", out).group(1))
    assert 25_000 < rows_out < 30_000  # ~2 % duplicates removed, nothing else lost
    modes = dict(re.findall(rf"privacy ([a-z-]+): ({NUMBER}) / ", out))
    assert set(modes) == {"hash", "encrypt", "mask", "generalize-prefix", "generalize-bucket", "drop"}
    for mode in modes:
        _spread(out, f"privacy {mode}")
        _spread(out, f"privacy {mode} per CPU-second")
    assert _spread(out, "ratio privacy/plain (per CPU-second)")[1] <= 1.5, out
    for label in ("encrypt_array per CPU-second", "encrypt Python loop (baseline) per CPU-second",
                  "ratio encrypt/Python loop (per CPU-second)"):
        _spread(out, label)  # printed after both encrypt paths decrypted back to their input (asserted)
