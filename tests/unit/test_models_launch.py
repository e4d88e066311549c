"""Launching candidates: disjoint GPU sets, CPU concurrency, torchrun command lines, resource planning.

`run_jobs` is exercised with a probe command (a tiny Python process that records what it saw) instead
of a training run: what is under test is the scheduling — which CUDA_VISIBLE_DEVICES each job gets and
how many run at once — not training, which the integration tests cover.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from daemon.adapters.models import train as models_train
from daemon.adapters.models.train import training_resources
from daemon.schema.environment import TrainingSection
from flows.training.launch import command_for, gpu_slots, run_jobs, visible_gpus

PROBE = """
import json, os, sys, time
started = time.time()
time.sleep(float(sys.argv[2]))
json.dump({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": started, "end": time.time()}, open(sys.argv[1], "w"))
"""


def _probe_jobs(tmp_path: Path, count: int) -> list[dict]:
    return [{"mode": "probe", "candidate": f"c{i}", "result_path": str(tmp_path / f"r{i}.json")} for i in range(count)]


def _probe(seconds: float):
    return lambda job, job_path, gpus: [sys.executable, "-c", PROBE, job["result_path"], str(seconds)]


def _max_overlap(runs) -> int:
    events = sorted([(r.result["start"], 1) for r in runs] + [(r.result["end"], -1) for r in runs], key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_gpu_slots_are_disjoint_sets_of_the_requested_size() -> None:
    assert gpu_slots([0, 1, 2, 3], 2, 4) == [[0, 1], [2, 3]]
    assert gpu_slots([0, 1, 2, 3], 1, 2) == [[0], [1]]
    assert gpu_slots([0, 1, 2, 3, 4], 2, 8) == [[0, 1], [2, 3]]  # the odd GPU stays idle, never shared
    assert gpu_slots([0, 1, 2, 3], "auto", 3) == [[0, 1, 2, 3]]
    assert gpu_slots([0, 1], 4, 2) == [[0, 1]]  # asks for more than exist: one job on all of them
    assert gpu_slots([], 2, 3) == [None, None, None]


def test_four_gpus_two_per_candidate_run_two_at_a_time_on_disjoint_sets(tmp_path: Path) -> None:
    jobs = _probe_jobs(tmp_path, 4)
    runs = run_jobs(jobs, tmp_path / "work", tmp_path / "logs", slots=gpu_slots([0, 1, 2, 3], 2, 4), command=_probe(0.6))
    assert all(r.returncode == 0 and r.result for r in runs)
    assert sorted(r.result["cuda"] for r in runs) == ["0,1", "0,1", "2,3", "2,3"]
    assert [",".join(map(str, r.gpus)) for r in runs] == [r.result["cuda"] for r in runs]
    assert _max_overlap(runs) == 2
    for a in runs:  # two jobs that overlapped in time never shared a GPU
        for b in runs:
            if a is not b and a.result["start"] < b.result["end"] and b.result["start"] < a.result["end"]:
                assert not set(a.result["cuda"].split(",")) & set(b.result["cuda"].split(","))


def test_cpu_runs_max_concurrent_candidates_at_once(tmp_path: Path) -> None:
    resources, slots, threads = training_resources(TrainingSection(max_concurrent_candidates=3), cpu_count=6)
    assert slots == [None, None, None] and threads == 2 and resources["launcher"] == "lightning"
    runs = run_jobs(_probe_jobs(tmp_path, 4), tmp_path / "work", tmp_path / "logs", slots=slots, command=_probe(0.8))
    assert all(r.returncode == 0 and r.gpus is None for r in runs)
    assert _max_overlap(runs) == 3
    serial = run_jobs(_probe_jobs(tmp_path, 2), tmp_path / "w1", tmp_path / "l1", slots=[None], command=_probe(0.2))
    assert _max_overlap(serial) == 1


def test_cpu_candidates_default_to_one_per_core() -> None:
    for cores, expected in ((1, 1), (2, 2), (16, 4)):
        _, slots, threads = training_resources(TrainingSection(), cpu_count=cores)
        assert len(slots) == expected and threads == max(1, cores // expected)
    assert len(training_resources(TrainingSection(max_concurrent_candidates=1), cpu_count=8)[1]) == 1  # as set
    assert training_resources(TrainingSection(accelerator="auto"), cpu_count=8)[1] == [None]  # may be a GPU: one


def test_training_resources_on_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    section = TrainingSection(accelerator="gpu", devices=2, max_concurrent_candidates=4, gpu_ids=[0, 1, 2, 3], precision="bf16-mixed")
    resources, slots, threads = training_resources(section)
    assert slots == [[0, 1], [2, 3]] and threads is None and resources["precision"] == "bf16-mixed"
    discovered = TrainingSection(accelerator="gpu", devices=1, max_concurrent_candidates=2)
    assert training_resources(discovered, {"CUDA_VISIBLE_DEVICES": "4,5,6"})[1] == [["4"], ["5"]]
    monkeypatch.setattr(models_train, "visible_gpus", lambda environ=None: [])
    assert training_resources(discovered)[1] == [None]  # GPUs unknown: one candidate at a time


def test_visible_gpus() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({}, query=lambda: "0\n1\n2\n") == ["0", "1", "2"]

    def missing() -> str:
        raise FileNotFoundError("nvidia-smi")

    assert visible_gpus({}, query=missing) == []


JOB = {"mode": "train", "candidate": "b", "tag": "penguin_sex:b-0123456789abcdef"}


def _job(**resources) -> dict:
    return {**JOB, "resources": resources}


def test_lightning_launcher_runs_the_entry_point() -> None:
    assert command_for(_job(devices=2), Path("/w/job.json"), None, {}) == [sys.executable, "-m", "flows.training.run", "/w/job.json"]


def test_torchrun_command_lines() -> None:
    single = command_for(_job(launcher="torchrun", devices=2), Path("j.json"), None, {})
    assert single == [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1", "--standalone",
                      "-m", "flows.training.run", "j.json"]
    auto = command_for(_job(launcher="torchrun", devices="auto"), Path("j.json"), ["2", "3", "5"], {})
    assert "--nproc_per_node=3" in auto
    multi = command_for(_job(launcher="torchrun", devices=4, num_nodes=2), Path("j.json"), [0, 1, 2, 3],
                        {"SPECD_RDZV_ENDPOINT": "10.0.0.7:29400"})
    assert multi[3:9] == ["--nproc_per_node=4", "--nnodes=2", "--rdzv_backend=c10d", "--rdzv_endpoint=10.0.0.7:29400",
                          "--rdzv_id=penguin_sex-b-0123456789abcdef", "-m"]
    fallback = command_for(_job(launcher="torchrun", devices=1, num_nodes=3), Path("j.json"), None,
                           {"MASTER_ADDR": "head", "MASTER_PORT": "29500", "SPECD_RDZV_ID": "run7", "SPECD_NODE_RANK": "2"})
    assert "--rdzv_endpoint=head:29500" in fallback and "--rdzv_id=run7" in fallback and "--node_rank=2" in fallback
    assert "--nnodes=3" in fallback and "--standalone" not in fallback
    fixed = [a for a in fallback if a.startswith(("--rdzv_conf", "--max_restarts"))]  # node 2 of 3: not the host
    assert fixed == ["--rdzv_conf=join_timeout=300,read_timeout=300,is_host=false", "--max_restarts=0"]
    # no rendezvous endpoint: every node on this machine, over loopback
    local = command_for(_job(launcher="torchrun", num_nodes=2), Path("j.json"), None, {})
    assert local == [sys.executable, "-m", "flows.training.multinode", "j.json", "2"]


def test_node_commands_put_the_rendezvous_on_node_zero_and_bound_it_by_the_timeout() -> None:
    from flows.training.multinode import Node, is_writer, node_command

    commands = [node_command("job.json", Node(rank, 2, "10.0.0.7:29400", "run1", 4, 45.0), python="py") for rank in (0, 1)]
    for rank, command in enumerate(commands):
        assert command[:3] == ["py", "-m", "torch.distributed.run"] and command[-3:] == ["-m", "flows.training.run", "job.json"]
        assert {"--nnodes=2", "--nproc_per_node=4", f"--node_rank={rank}", "--rdzv_backend=c10d",
                "--rdzv_endpoint=10.0.0.7:29400", "--rdzv_id=run1", "--max_restarts=0"} <= set(command)
    assert "--rdzv_conf=join_timeout=45,read_timeout=45,is_host=true" in commands[0]
    assert "--rdzv_conf=join_timeout=45,read_timeout=45,is_host=false" in commands[1]
    with pytest.raises(ValueError, match="node_rank 2"):
        Node(2, 2, "h:1", "x")
    with pytest.raises(ValueError, match="host:port"):
        Node(0, 2, "nohost", "x")
    # the writer: node 0's first local rank when nodes were launched per node, else Lightning's global zero
    assert is_writer(False, {"SPECD_NODE_RANK": "0", "LOCAL_RANK": "0"})
    assert not is_writer(True, {"SPECD_NODE_RANK": "1", "LOCAL_RANK": "0"})
    assert not is_writer(True, {"SPECD_NODE_RANK": "0", "LOCAL_RANK": "1"})
    assert is_writer(True, {}) and not is_writer(False, {})


def test_training_section_launcher_field() -> None:
    assert TrainingSection().launcher == "lightning"
    section = TrainingSection(launcher="torchrun", devices=2, num_nodes=2)
    resources, _, _ = training_resources(section)
    assert resources["launcher"] == "torchrun" and resources["num_nodes"] == 2
    command = command_for({**JOB, "resources": resources}, Path("j.json"), None, {"SPECD_RDZV_ENDPOINT": "h:1"})
    assert command[2] == "torch.distributed.run" and "--nnodes=2" in command and "--nproc_per_node=2" in command
    with pytest.raises(ValidationError):
        TrainingSection(launcher="mpirun")


def test_a_stopping_daemon_terminates_running_training(tmp_path):
    """Training runs in its own session, in the launcher's own child registry; the daemon's graceful stop
    reaches it through procs.terminate_tracked."""
    import threading
    import time

    from daemon.shared import procs
    from flows.training.launch import CHILDREN

    job = {"mode": "train", "candidate": "slow", "result_path": str(tmp_path / "result.json")}
    runs: list = []

    def sleeper(job, path, gpus):
        return [sys.executable, "-c", "import time; time.sleep(60)"]

    thread = threading.Thread(target=lambda: runs.extend(run_jobs([job], tmp_path, tmp_path, command=sleeper)))
    thread.start()
    deadline = time.monotonic() + 20
    while not CHILDREN._children and time.monotonic() < deadline:
        time.sleep(0.05)
    assert procs._default._children == {}  # not the daemon's registry
    assert procs.terminate_tracked() == 1
    thread.join(timeout=20)
    assert not thread.is_alive() and runs[0].returncode != 0 and runs[0].result is None
    assert CHILDREN._children == {}


def test_several_nodes_without_torchrun_is_a_validation_error(spec_repo) -> None:
    from daemon.core.compose import load_environment
    from daemon.shared.errors import SpecErrors

    spec_repo.write("environments/dev.yaml", "defaults: [base]\nname: dev\ntraining:\n  num_nodes: 2\n  ddp_timeout_s: 30\n")
    with pytest.raises(SpecErrors) as info:
        load_environment(spec_repo.path, "dev")
    message = str(info.value.issues[0])
    assert "environments/dev.yaml" in message and "training" in message and "need launcher: torchrun" in message
    spec_repo.write("environments/dev.yaml", "defaults: [base]\nname: dev\ntraining:\n  num_nodes: 2\n  launcher: torchrun\n"
                                             "  ddp_timeout_s: 30\n")
    assert load_environment(spec_repo.path, "dev").training.ddp_timeout_s == 30
