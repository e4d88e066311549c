"""`specd validate` and `specd plan` must not import torch, bentoml or prefect (DESIGN: fast paths stay light)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("torch", "bentoml", "prefect", "lightning", "pytorch_lightning")
PROBE = f"""
import json, sys
from daemon.cli.main import main
codes = [main(["validate", "--repo", sys.argv[1], "--home", sys.argv[2]]), main(["plan", "--repo", sys.argv[1], "--home", sys.argv[2]])]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(json.dumps({{"codes": codes, "heavy": heavy}}))
"""


def test_validate_and_plan_of_the_example_specs_stay_light(tmp_path):
    result = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), str(tmp_path / "home")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0, 0], result.stdout + result.stderr
    assert report["heavy"] == []
