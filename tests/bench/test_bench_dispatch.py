"""CI run of the dispatch benchmark at its smallest: one candidate locally and one through a real work pool
(a `specd worker` on the session's Prefect server); both train, give the same metrics and land once each
in the store; one `bronze_penguins` build locally and one on the same worker (`tables.work_pool`), both
committing version 0 with the same rows; every figure is printed (not a performance gate on a shared CI box)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).with_name("bench_dispatch.py")
NUMBER = r"-?[0-9][0-9,.]*"
SPREAD = rf"({NUMBER}) / ({NUMBER}) / ({NUMBER})"


@pytest.mark.bench
def test_bench_dispatch_trains_the_same_candidate_both_ways(prefect_api: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    done = subprocess.run([sys.executable, str(BENCH), "--runs", "1", "--epochs", "1", "--tables"], capture_output=True, text=True,
                          timeout=400, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "same metrics from both paths: True" in out and "models in the store: 2 (expected 2)" in out, out
    assert "same rows from both table paths: True" in out, out
    for label in ("local launch s/candidate", "work pool s/candidate", "ratio pool/local", "overhead pool-local s",
                  "table build local s", "table build pool s", "table ratio pool/local", "table overhead pool-local s"):
        match = re.search(rf"^{re.escape(label)}[^:]*: {SPREAD}", out, re.MULTILINE)
        assert match, (label, out)
        low, median, high = (float(v.replace(",", "")) for v in match.groups())
        assert low <= median <= high, (label, out)
    local = float(re.search(rf"^local launch s/candidate[^:]*: {SPREAD}", out, re.MULTILINE).group(2))
    assert local > 0
