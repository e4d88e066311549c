"""Multi-node DDP benchmark: one candidate trained by two torchrun "nodes" (gloo, 127.0.0.1) vs the same
candidate in one process, both launched the daemon's way (`launch.run_jobs`).

    python tests/bench/bench_multinode.py [--runs N] [--epochs E]

Prints, as min / median / max over N runs (≥ 3 by default), the wall seconds and the CPU seconds (all
processes) of each launch and their ratios within a run: what two nodes cost over one process for a
small model, where process start-up, the c10d rendezvous, the pre-flight all-reduce and gradient
all-reduces dominate (on real multi-GPU nodes the work per step is what is split). Every run checks
what it must not cost: world size 2, identical parameters on both ranks, one model in the store.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

FEATURES = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train_once(root: Path, epochs: int, nodes: int) -> tuple[float, float, dict]:
    """(wall s, CPU s of every process, result) of one candidate on `nodes` nodes (1: plain process)."""
    from daemon.schema.model import ModelSpec
    from flows.training.artifact import artifact_complete
    from flows.training.jobs import train_job
    from flows.training.launch import run_jobs
    from tests.helpers.models import gold_uri, small_spec

    spec = ModelSpec.model_validate(small_spec(trainer__epochs=epochs))
    resources = {"accelerator": "cpu", "devices": 1}
    if nodes > 1:
        resources |= {"num_nodes": nodes, "strategy": "ddp", "launcher": "torchrun", "ddp_timeout_s": 120}
    store = root / f"bentoml-{nodes}-{time.monotonic_ns()}"
    job = train_job(model="penguin_sex", candidate="a", candidate_fp="d" * 64, model_fp="e" * 64, git_sha="bench",
                    spec_data=spec.model_dump(mode="json"), features=FEATURES, table_uri=gold_uri(root), delta_version=0,
                    data_id=None, storage_options={}, config=spec.candidate_config("a"), resources=resources,
                    store_root=str(store), work_dir=root / "work", tensorboard_dir=str(root / "tb"), code_version="model/1")
    job["torch_threads"] = 1
    cpu, wall = _children_cpu(), time.perf_counter()
    (run,) = run_jobs([job], root / "work", root / "logs", env={"BENTOML_HOME": str(store)})
    wall, cpu = time.perf_counter() - wall, _children_cpu() - cpu
    if run.result is None or run.result.get("status") != "trained":
        raise SystemExit(f"{nodes}-node training failed (exit {run.returncode}):\n{run.log_tail(40)}")
    result = run.result
    assert result["world_size"] == nodes and len(set(result["parameter_digests"])) == 1, result
    assert artifact_complete(job["tag"], store)
    assert len([p for p in (store / "models").glob("*/*") if p.is_dir()]) == 1
    return wall, cpu, result


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args(argv)
    from tests.helpers.models import gold_uri, write_penguin_table

    walls: dict[int, list[float]] = {1: [], 2: []}
    cpus: dict[int, list[float]] = {1: [], 2: []}
    checks = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_penguin_table(gold_uri(root))
        for run in range(args.runs):
            for nodes in ((1, 2) if run % 2 == 0 else (2, 1)):  # alternate who goes first
                wall, cpu, result = train_once(root, args.epochs, nodes)
                walls[nodes].append(wall)
                cpus[nodes].append(cpu)
                if nodes == 2:
                    checks.append({"world_size": result["world_size"], "num_nodes": result["num_nodes"],
                                   "identical_parameters": len(set(result["parameter_digests"])) == 1})
    wall_ratio = [b / a for a, b in zip(walls[1], walls[2], strict=True)]
    cpu_ratio = [b / a for a, b in zip(cpus[1], cpus[2], strict=True)]
    print(f"penguin_sex candidate, {args.epochs} epochs; runs {args.runs} (min / median / max)")
    print(f"one process (python -m flows.training.run): {spread(walls[1])} s wall, {spread(cpus[1])} s CPU")
    print(f"two nodes (torchrun --nnodes=2, c10d on 127.0.0.1): {spread(walls[2])} s wall, {spread(cpus[2])} s CPU")
    print(f"ratio two nodes/one process (wall): {spread(wall_ratio)}")
    print(f"ratio two nodes/one process (CPU): {spread(cpu_ratio)}")
    print(f"two-node checks: {json.dumps(checks[-1])} in every run: {all(c == checks[-1] for c in checks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
