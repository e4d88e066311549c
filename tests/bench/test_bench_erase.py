"""CI run of the erasure benchmark at a small size: it runs, removes exactly the subject's rows, prints ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.bench
def test_bench_erase_prints_sane_ratios() -> None:
    out = subprocess.run([sys.executable, "tests/bench/bench_erase.py", "--rows", "20000", "--runs", "3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout
    assert re.findall(r"^(clear|hash|encrypt): .* rows removed 3$", out, re.M) == ["clear", "hash", "encrypt"], out
    ratios = dict(re.findall(r"ratio (\w+) erase/plain delete \(median wall time\): ([0-9.]+)", out))
    assert set(ratios) == {"clear", "hash", "encrypt"} and all(float(r) > 0 for r in ratios.values()), out
