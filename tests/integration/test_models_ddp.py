"""The multi-device code path on CPU: one candidate trained by DDP over two gloo processes.

Twice, once per launcher in the environment's `training.launcher`: `lightning` (the default) runs
`python -m flows.training.run job.json` and Lightning's DDP launcher re-executes that entry point per
rank — our own process, never the daemon's; `torchrun` starts both ranks itself, each runs specd's
pre-flight all-reduce (flows.training.multinode) and Lightning joins the process group it created.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.schema.model import ModelSpec
from flows.training.artifact import artifact_complete
from flows.training.jobs import train_job
from flows.training.launch import run_jobs
from tests.helpers.models import gold_uri, small_spec, write_penguin_table

pytestmark = pytest.mark.integration

FEATURES = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]


@pytest.mark.parametrize("launcher", ["lightning", "torchrun"])
def test_ddp_two_cpu_processes(tmp_path: Path, launcher: str) -> None:
    uri = gold_uri(tmp_path)
    write_penguin_table(uri)
    spec = ModelSpec.model_validate(small_spec())
    data = spec.model_dump(mode="json")
    job = train_job(
        model="penguin_sex", candidate="a", candidate_fp="d" * 64, model_fp="e" * 64, git_sha="test", spec_data=data,
        features=FEATURES, table_uri=uri, delta_version=0, data_id=None, storage_options={},
        config=spec.candidate_config("a"),
        resources={"accelerator": "cpu", "devices": 2, "strategy": "ddp", "launcher": launcher},
        store_root=str(tmp_path / "bentoml"), work_dir=tmp_path / "work", tensorboard_dir=str(tmp_path / "tb"),
        code_version="model/1",
    )
    job["torch_threads"] = 1
    (run,) = run_jobs([job], tmp_path / "work", tmp_path / "logs")
    log = run.log_path.read_text()
    assert run.returncode == 0, run.log_tail(40)
    if launcher == "torchrun":  # specd's pre-flight creates the process group (timeout bounded); Lightning reuses it
        assert "DDP pre-flight ok on rank 1 of 2" in log and "DDP pre-flight ok on rank 0 of 2" in log
    else:
        assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in log
    result = json.loads(Path(job["result_path"]).read_text())
    assert result["status"] == "trained"
    assert result["world_size"] == 2 and result["launcher"] == launcher  # torchrun's ranks carry TORCHELASTIC_RUN_ID
    assert result["metrics"]["roc_auc"] > 0.8
    assert artifact_complete(job["tag"], tmp_path / "bentoml")
