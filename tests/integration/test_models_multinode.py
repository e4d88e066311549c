"""Multi-node DDP, actually run: two torchrun "nodes" (one gloo process each) on 127.0.0.1.

The nodes are started one by one with `multinode.start_node`, as a work-pool worker per server would;
both get through the rendezvous (hosted by node 0) and the pre-flight all-reduce, then node 1 is killed
mid-training: node 0 must exit, with a clear error, within the spec's timeout, and nothing is written.
The happy path the daemon's way (`run_jobs` → `python -m flows.training.multinode`: world size 2,
identical parameters on both ranks, one model in the store) is tests/bench/test_bench_multinode.py.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from daemon.schema.model import ModelSpec
from daemon.shared import procs
from flows.training import multinode
from flows.training.jobs import train_job
from tests.helpers.models import gold_uri, small_spec, write_penguin_table

pytestmark = pytest.mark.integration

FEATURES = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]


def _job(tmp_path: Path, epochs: int, timeout_s: float) -> dict:
    uri = gold_uri(tmp_path)
    write_penguin_table(uri)
    spec = ModelSpec.model_validate(small_spec(trainer__epochs=epochs))
    job = train_job(
        model="penguin_sex", candidate="a", candidate_fp="d" * 64, model_fp="e" * 64, git_sha="test",
        spec_data=spec.model_dump(mode="json"), features=FEATURES, table_uri=uri, delta_version=0, data_id=None,
        storage_options={}, config=spec.candidate_config("a"),
        resources={"accelerator": "cpu", "devices": 1, "num_nodes": 2, "strategy": "ddp", "launcher": "torchrun",
                   "ddp_timeout_s": timeout_s},
        store_root=str(tmp_path / "bentoml"), work_dir=tmp_path / "work", tensorboard_dir=str(tmp_path / "tb"),
        code_version="model/1",
    )
    job["torch_threads"] = 1
    return job


def _models_in_store(root: Path) -> list[Path]:
    return [p for p in (root / "models").glob("*/*") if p.is_dir()]


def test_killing_node_one_makes_node_zero_exit_within_the_timeout(tmp_path: Path) -> None:
    timeout = 40.0  # generous: on 2 loaded cores a healthy step can take seconds (a dead peer is seen at once)
    job = _job(tmp_path, epochs=3000, timeout_s=timeout)  # far longer than the test: it must be cut short
    job_path = tmp_path / "work" / "job.json"
    job_path.parent.mkdir(parents=True, exist_ok=True)
    job_path.write_text(json.dumps(job), encoding="utf-8")
    env = {**os.environ, "BENTOML_HOME": job["store_root"]}
    endpoint = f"127.0.0.1:{multinode.free_port()}"
    nodes = [multinode.Node(rank, 2, endpoint, "kill-test", 1, timeout) for rank in (0, 1)]
    logs = [tmp_path / f"node{rank}.log" for rank in (0, 1)]
    processes = [multinode.start_node(job_path, node, log, env=env) for node, log in zip(nodes, logs, strict=True)]
    try:
        deadline = time.monotonic() + 90
        while "pre-flight ok" not in logs[1].read_text() or "pre-flight ok" not in logs[0].read_text():
            assert all(p.poll() is None for p in processes), logs[0].read_text()[-3000:] + logs[1].read_text()[-3000:]
            assert time.monotonic() < deadline, "the two nodes never got through the pre-flight"
            time.sleep(0.2)
        time.sleep(3)  # into the training loop
        assert processes[0].poll() is None, logs[0].read_text()[-3000:]
        agent = psutil.Process(processes[1].pid)  # torchrun starts its ranks in sessions of their own
        for process in [agent, *agent.children(recursive=True)]:  # node 1 and its rank: a server going away
            process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        processes[0].wait(timeout=timeout + 30)
        exited_after = time.monotonic() - killed
    finally:
        for process in processes:
            procs.stop_child_group(process)
    log = logs[0].read_text()
    assert processes[0].returncode != 0
    assert exited_after < timeout, f"node 0 took {exited_after:.1f} s to give up"
    assert "specd: DDP rank" in log and "failed" in log, log[-3000:]
    assert not Path(job["result_path"]).exists()
    assert not _models_in_store(tmp_path / "bentoml")
