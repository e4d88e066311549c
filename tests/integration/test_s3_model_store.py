"""A model store every server can reach (`storage.models_uri` on S3, moto_server on 127.0.0.1 standing in
for a real S3-compatible store): one state home trains and publishes; a second, with an empty BentoML
store, imports the release and its model instead of training, serves it with `bentoml serve`, and the
service logs its predictions to the lake on S3.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from tests.conftest import ROOT, free_port
from tests.helpers.journeys import free_service_port
from tests.helpers.models import small_spec
from tests.helpers.s3 import SECRET_KEY

pytestmark = [pytest.mark.integration]

SERVICE = """
model: penguin_sex
variants:
  - {name: champion, role: champion, weight: 100}
prediction_log: {enabled: true, flush_interval_s: 0.2}
"""


def specd(*args: str, repo: Path, home: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "daemon.cli", *args, "--repo", str(repo), "--home", str(home), "--env", "dev"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400, env={**os.environ, **env})


def test_train_on_one_home_serve_from_another_that_imports_from_s3(spec_repo, tmp_path, s3_server, s3_bucket):
    from daemon.adapters.online import embedded
    from daemon.adapters.services.supervisor import Supervisor
    from daemon.shared import storage_uri

    for part in ("tables", "presets", "data"):
        shutil.copytree(ROOT / "specs" / part, spec_repo.path / "specs" / part)
    spec_repo.write("specs/models/penguin_sex.yaml", yaml.safe_dump(small_spec(trainer__epochs=5)))
    lake, models = f"s3://{s3_bucket}/lake", f"s3://{s3_bucket}/models"
    options = "\n".join(f"    {k}: {v}" if v.startswith("${") else f"    {k}: \"{v}\"" for k, v in s3_server.spec_options().items())
    dev = spec_repo.path / "environments" / "dev.yaml"
    dev.write_text(dev.read_text() + f"storage:\n  root: {lake}\n  models_uri: {models}\n  storage_options:\n{options}\n")
    spec_repo.commit("tables and a model on s3")

    trainer, server = tmp_path / "trainer", tmp_path / "server"
    base = {"SPECD_ONLINE_PORT": str(free_port()), "SPECD_SERVICE_PORT_BASE": str(free_port())}
    try:
        first = specd("apply", "--no-prefect", repo=spec_repo.path, home=trainer, env={**base, "BENTOML_HOME": str(trainer / "bentoml")})
        assert first.returncode == 0, first.stdout + first.stderr
        assert "published to " + models in first.stderr, first.stderr
        release = json.loads(storage_uri.read_bytes(
            next(f"{models}/penguin_sex/releases/{n}" for n in storage_uri.list_files(f"{models}/penguin_sex/releases", s3_server.options())),
            s3_server.options()))
        champion = release["champion"]
        assert storage_uri.exists(f"{models}/penguin_sex/models/{champion.split(':')[1]}.bentomodel", s3_server.options())

        spec_repo.write("specs/services/penguin_api.yaml", SERVICE)
        spec_repo.commit("serve it")
        # picked now (the training above left time for another process to take a port), and so that the
        # service's stable default port (base + an offset from its name) is the free one, not just the base
        base["SPECD_SERVICE_PORT_BASE"] = str(free_service_port("penguin_api")[0])
        second = specd("apply", "--no-prefect", repo=spec_repo.path, home=server, env={**base, "BENTOML_HOME": str(server / "bentoml")})
        assert second.returncode == 0, second.stdout + second.stderr
        assert "imported release" in second.stderr and "no training" in second.stderr, second.stderr
        assert "create table/" not in second.stderr  # the lake is shared: nothing rebuilt either
        assert not list((server / "runtime").glob("training/**/job.json")) if (server / "runtime").exists() else True

        from flows.training import artifact, registry

        local = registry.current_release("penguin_sex", server / "bentoml")
        assert local is not None and local.champion == champion and local.data["delta_version"] == release["data"]["delta_version"]
        assert local.git_sha == release["git_sha"] and artifact.artifact_complete(champion, server / "bentoml")
        info = artifact.read_model_info(champion, server / "bentoml")
        assert info["labels"] and info["metadata"]  # the lineage labels and metrics came along

        import re

        port = int(re.search(r"service penguin_api on 127\.0\.0\.1:(\d+)", second.stderr).group(1))
        row = {"species": "Adelie", "island": "Torgersen", "bill_length_mm": 39.1, "bill_depth_mm": 18.7,
               "flipper_length_mm": 181.0, "body_mass_g": 3750.0, "year": 2007}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=json.dumps({"features": row}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(exc.read().decode()) from None
        assert answer["model_version"] == champion and "prediction" in answer, answer
        Supervisor(server).stop("penguin_api")  # flushes the prediction log on the way out
        logged = DeltaTable(f"{lake}/predictions/penguin_api", storage_options=s3_server.options()).to_pyarrow_table()
        assert logged.num_rows >= 1 and champion in logged.column("model_tag").to_pylist()
        ab = subprocess.run([sys.executable, "-m", "daemon.cli", "ab", "penguin_api", "--json", "--home", str(server)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "BENTOML_HOME": str(server / "bentoml")})
        assert ab.returncode == 0, ab.stderr  # `specd ab` reads the logs on S3 (DuckDB over the Delta tables)
        report = json.loads(ab.stdout)
        assert {v["variant"]: v["requests"] for v in report["variants"]} == {"champion": logged.num_rows}
        for done in (first, second, ab):
            assert SECRET_KEY not in done.stdout + done.stderr
    finally:
        Supervisor(server).stop_all()
        for home in (trainer, server):
            embedded.stop(home)
