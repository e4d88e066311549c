"""The GPU check script runs on CPU too (`--device cpu`), so its code is exercised without a GPU."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("run_gpu_check.py")


@pytest.mark.integration
def test_gpu_check_runs_on_cpu() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--rows", "8000", "--epochs", "1",
                           "--batch", "1024", "--rounds", "1", "--skip-example", "--loader-rows", "20000", "--multi-gpu", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("device: cpu")
    ratio = re.search(r"ratio specd/hand-written: ([0-9.]+)", done.stdout)
    assert ratio and float(ratio.group(1)) > 0.1, done.stdout
    loading = re.search(r"specd loader \(Delta -> cpu tensor\): ([0-9,]+) rows/s; training ([0-9,]+) samples/s", done.stdout)
    assert loading and int(loading.group(1).replace(",", "")) > 0, done.stdout
    multi = json.loads(re.search(r"^multi-gpu: (.*)$", done.stdout, re.MULTILINE).group(1))
    assert multi["candidates"] == 2 and multi["ddp_world_size"] == 2 and multi["ddp_identical_parameters"], multi
