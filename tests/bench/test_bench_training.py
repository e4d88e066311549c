"""CI run of the training benchmark at a small size: the ratio lines are printed and sane."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).with_name("bench_training.py")


@pytest.mark.bench
def test_bench_training_prints_sane_ratios() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--size", "20000", "--batch", "2048", "--epochs", "1", "--rounds", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    training = re.search(r"ratio training specd/hand-written: ([0-9.]+)", done.stdout)
    loading = re.search(r"ratio loading/training: ([0-9.]+)", done.stdout)
    assert training and loading, done.stdout
    # Sane, not a performance gate on a shared 2-core CI box: both loops ran and are within an order of magnitude.
    assert 0.1 < float(training.group(1)) < 10.0
    assert float(loading.group(1)) > 0.0
    assert re.search(r"hand-written loop: [0-9,]+ samples/s", done.stdout)
