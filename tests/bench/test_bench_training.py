"""CI run of the training benchmark at a small size: every figure is printed, the loader is
deterministic across a rebuild, and the ratios are sane (not a performance gate on a shared CI box)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).with_name("bench_training.py")
NUMBER = r"[0-9][0-9,.]*"
SPREAD = rf"({NUMBER}) / ({NUMBER}) / ({NUMBER})"


@pytest.mark.bench
def test_bench_training_prints_sane_ratios() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--size", "8000", "--train-size", "4000", "--width", "32", "--batch", "1024",
                           "--epochs", "1", "--runs", "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "rebuilt table (shuffled, 3 files) loads into an identical tensor: True" in out, out
    figures = {}
    for label in ("hand-written loop", "specd training path", "ratio training specd/hand-written",
                  "hand-written loader", "specd loader", "ratio loading specd/hand-written", "ratio loading/training"):
        match = re.search(rf"^{re.escape(label)}[^:]*: {SPREAD}", out, re.MULTILINE)
        assert match, (label, out)
        low, median, high = (float(v.replace(",", "")) for v in match.groups())
        assert 0 < low <= median <= high, (label, out)
        figures[label] = median
    # both loops ran and are within an order of magnitude of each other; so are both loaders
    assert 0.1 < figures["ratio training specd/hand-written"] < 10.0
    assert 0.02 < figures["ratio loading specd/hand-written"] < 10.0


@pytest.mark.bench
def test_bench_training_compares_the_loaders_on_other_shapes() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--shapes", "6000x4,3000x12:int,4000x9:mixed", "--runs", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = re.findall(rf"^(\d+) x (\d+) (\w+): hand-written {SPREAD} rows/s, specd {SPREAD} rows/s, ratio {SPREAD}",
                       done.stdout, re.MULTILINE)
    assert [line[:3] for line in lines] == [("6000", "4", "float"), ("3000", "12", "int"), ("4000", "9", "mixed")], done.stdout
    for line in lines:
        low, median, high = (float(v.replace(",", "")) for v in line[9:12])
        assert 0 < low <= median <= high, done.stdout
