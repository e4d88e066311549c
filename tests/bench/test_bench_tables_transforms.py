"""CI run of the transforms benchmark at a small size: it runs, prints its ratio lines, and they are sane."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.bench
def test_bench_tables_transforms_prints_sane_ratios() -> None:
    out = subprocess.run(
        [sys.executable, "tests/bench/bench_tables_transforms.py", "--size", "30000", "--batch", "8192"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    ratio = float(re.search(r"ratio transformed/plain \(throughput\): ([0-9.]+)", out).group(1))
    assert 0 < ratio <= 1.5, out  # transforms cannot be much faster than a plain copy
    assert re.search(r"clean\+quality\+privacy: [0-9,]+ rows/s \([0-9.]+ s, (\d+) rows out\)", out)
    rows_out = int(re.search(r"(\d+) rows out", out).group(1))
    assert 25_000 < rows_out < 30_000  # ~2 % duplicates removed, nothing else lost
    modes = dict(re.findall(r"privacy ([a-z-]+): ([0-9,]+) rows/s", out))
    assert set(modes) == {"hash", "encrypt", "mask", "generalize-prefix", "generalize-bucket", "drop"}
    assert all(int(v.replace(",", "")) > 0 for v in modes.values())
