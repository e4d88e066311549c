"""CI run of the multi-node benchmark at a small size (one run, 2 epochs): a candidate trained by two
torchrun nodes on 127.0.0.1 through the daemon's launcher reaches world size 2 with identical parameters
on both ranks and lands once in the store (the bench asserts those per run and prints them); the figures
are printed and sane. This is also the CI test of the two-node happy path
(tests/integration/test_models_multinode.py kills a node)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).with_name("bench_multinode.py")
NUMBER = r"[0-9][0-9,.]*"
SPREAD = rf"({NUMBER}) / ({NUMBER}) / ({NUMBER})"


@pytest.mark.bench
def test_bench_multinode_trains_once_on_two_nodes() -> None:
    local = {k: v for k, v in os.environ.items()  # no rendezvous endpoint: both nodes on this machine
             if k not in ("SPECD_RDZV_ENDPOINT", "MASTER_ADDR", "MASTER_PORT", "SPECD_NODE_RANK")}
    done = subprocess.run([sys.executable, str(BENCH), "--runs", "1", "--epochs", "2"], capture_output=True, text=True,
                          timeout=240, env=local)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    checks = re.search(r"^two-node checks: (\{.*\}) in every run: True$", out, re.MULTILINE)
    assert checks, out
    assert json.loads(checks.group(1)) == {"world_size": 2, "num_nodes": 2, "identical_parameters": True}
    for label in ("ratio two nodes/one process (wall)", "ratio two nodes/one process (CPU)"):
        match = re.search(rf"^{re.escape(label)}: {SPREAD}", out, re.MULTILINE)
        assert match, (label, out)
        assert 0.2 < float(match.group(2)) < 20, out  # two nodes start twice the processes: slower, not absurdly
