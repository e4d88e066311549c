"""`bentoml build` of a versioned bento per service version, with git sha + fingerprint labels (run once)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bentos.routing import write_routing
from daemon.adapters.services.desired_routing import build_routing
from tests.helpers import services as cs

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_bento_is_built_with_models_labels_and_routing(tmp_path):
    home = tmp_path / "home"
    models = cs.make_models(home)
    cs.release(home, "m1", models["a"], (models["b"],))
    store = cs.bentoml_home(home)
    spec = cs.service_spec(3999)
    routing, _ = build_routing("penguin_api", spec, fingerprint="0123456789abcdef0123", revision="cafe" * 10,
                               store=store, storage_root=str(home / "lake"))
    routing_file = home / "run" / "routing.json"
    write_routing(routing_file, routing)
    env = {**os.environ, "BENTOML_HOME": str(store)}
    build = [sys.executable, "-m", "bentos.build", str(routing_file)]
    result = subprocess.run(build, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    tag = result.stdout.strip().splitlines()[-1]
    assert tag == "specd_penguin_api:0123456789abcdef"
    bento_dir = store / "bentos" / "specd_penguin_api" / "0123456789abcdef"
    import yaml

    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert info["labels"]["specd.git_sha"] == "cafe" * 10
    assert info["labels"]["specd.fingerprint"] == "0123456789abcdef0123"
    assert sorted(m["tag"] for m in info["models"]) == sorted(models.values())
    assert (bento_dir / "src" / "routing.json").is_file() and (bento_dir / "src" / "bentos" / "ab_service.py").is_file()
    assert {e["name"]: e["value"] for e in info["envs"]}["SPECD_ROUTING_FILE"] == "/home/bentoml/bento/src/routing.json"
    again = subprocess.run(build, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == tag  # same version: reused
