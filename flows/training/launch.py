"""Launch candidate processes: `python -m flows.training.run job.json`, concurrently on disjoint GPU sets.

Each job runs in its own session (process group) so that it — and any DDP ranks Lightning or torchrun
start under it — can be stopped as a unit; nothing is left behind when the caller is interrupted. GPU
sets come from the environment's `training.gpu_ids` (else the visible GPUs) split into groups of
`devices`, one group per concurrently running candidate (`CUDA_VISIBLE_DEVICES`); a group returns to the
pool when its candidate ends. On CPU, `max_concurrent_candidates` jobs run at once. Pure parts
(`gpu_slots`, `command_for`) are unit-tested; `run_jobs` takes the command builder as a parameter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.shared import procs
from flows.training import multinode

CODE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `flows` and `daemon` packages
# The launcher's own child registry (not the daemon's): a graceful daemon stop still reaches it through
# procs.terminate_tracked, which stops the workers of every registry.
CHILDREN = procs.ChildRegistry("training")


@dataclass(frozen=True)
class JobRun:
    job_path: Path
    result_path: Path
    log_path: Path
    returncode: int
    seconds: float
    result: dict[str, Any] | None
    gpus: tuple[GpuId, ...] | None = None  # the CUDA_VISIBLE_DEVICES set it ran on (None: CPU / not restricted)
    started_at: float = 0.0  # wall clock (time.time()) at start and end: shows which jobs overlapped
    ended_at: float = 0.0

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


GpuId = int | str  # an index, or whatever CUDA_VISIBLE_DEVICES named (e.g. a GPU UUID)


def visible_gpus(environ: Mapping[str, str] | None = None, *, query: Callable[[], str] | None = None) -> list[str]:
    """The GPUs this process may hand out when `training.gpu_ids` is empty: CUDA_VISIBLE_DEVICES when set,
    else the indices `nvidia-smi` lists, else none (then GPU candidates run one at a time on all GPUs)."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [part.strip() for part in visible.split(",") if part.strip() and part.strip() != "-1"]
    try:
        listing = query() if query else subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listing.splitlines() if line.strip()]


def gpu_slots(gpu_ids: Sequence[GpuId], devices: int | str, concurrency: int) -> list[list[GpuId] | None]:
    """Disjoint GPU sets, one per concurrently running candidate.

    `devices` GPUs per candidate ("auto"/-1: all of them), at most `concurrency` sets; GPUs left over
    after the last full set stay idle rather than being shared. No GPU ids: [None] * concurrency (CPU).
    Example: 4 GPUs, devices=2, concurrency=4 → [[0, 1], [2, 3]] (two candidates at a time).
    """
    if not gpu_ids:
        return [None] * max(1, concurrency)
    per_job = len(gpu_ids) if str(devices) in ("auto", "-1") else max(1, int(devices))
    slots: list[list[GpuId] | None] = [list(gpu_ids[i:i + per_job]) for i in range(0, len(gpu_ids) - per_job + 1, per_job)]
    return slots[:max(1, concurrency)] or [list(gpu_ids)]


def _nproc(devices: int | str, gpus: Sequence[GpuId] | None) -> int:
    if str(devices) in ("auto", "-1"):
        return len(gpus) if gpus else 1
    return max(1, int(devices))


def rendezvous_endpoint(environ: Mapping[str, str]) -> str | None:
    """host:port of the c10d rendezvous for multi-node torchrun: SPECD_RDZV_ENDPOINT, else MASTER_ADDR:MASTER_PORT."""
    if environ.get("SPECD_RDZV_ENDPOINT"):
        return environ["SPECD_RDZV_ENDPOINT"]
    if environ.get("MASTER_ADDR") and environ.get("MASTER_PORT"):
        return f"{environ['MASTER_ADDR']}:{environ['MASTER_PORT']}"
    return None


def command_for(job: Mapping[str, Any], job_path: Path, gpus: Sequence[GpuId] | None = None,
                environ: Mapping[str, str] | None = None) -> list[str]:
    """The command line of one job.

    `launcher: lightning` (default): `python -m flows.training.run job.json`; Lightning starts the other
    DDP ranks itself by re-executing that entry point. `launcher: torchrun`: `torchrun` starts
    `devices` ranks per node (`--nproc_per_node`) on `num_nodes` nodes (`--nnodes`). One node without a
    rendezvous endpoint → `--standalone`; otherwise c10d rendezvous at SPECD_RDZV_ENDPOINT (or
    MASTER_ADDR:MASTER_PORT) with an id every node derives alike (SPECD_RDZV_ID, else the candidate tag).
    Several nodes: with SPECD_NODE_RANK set, this machine's node (`multinode.node_command`: node 0 hosts the
    rendezvous, timeouts from `ddp_timeout_s`); with no endpoint at all, every node on this machine over
    loopback (`python -m flows.training.multinode`).
    """
    environ = os.environ if environ is None else environ
    entry = ["-m", "flows.training.run", str(job_path)]
    resources = job.get("resources", {})
    if resources.get("launcher", "lightning") != "torchrun":
        return [sys.executable, *entry]
    nnodes = int(resources.get("num_nodes", 1))
    command = [sys.executable, "-m", "torch.distributed.run",
               f"--nproc_per_node={_nproc(resources.get('devices', 1), gpus)}", f"--nnodes={nnodes}"]
    endpoint = rendezvous_endpoint(environ)
    if nnodes > 1 and endpoint is None:  # every node on this machine, over loopback (flows.training.multinode)
        return [sys.executable, "-m", "flows.training.multinode", str(job_path), str(nnodes)]
    if nnodes > 1 and environ.get("SPECD_NODE_RANK"):  # this machine is one node of several
        node = multinode.Node(int(environ["SPECD_NODE_RANK"]), nnodes, str(endpoint),
                              environ.get("SPECD_RDZV_ID") or multinode.rdzv_id_for(job),
                              _nproc(resources.get("devices", 1), gpus), multinode.job_timeout(job))
        return multinode.node_command(job_path, node)
    if endpoint is None:
        command.append("--standalone")
    else:
        default_id = multinode.rdzv_id_for(job)
        command += ["--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", f"--rdzv_id={environ.get('SPECD_RDZV_ID') or default_id}"]
    return command + entry


def _environment(extra: Mapping[str, str], gpus: Sequence[GpuId] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CODE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("PYTHONHASHSEED", "0")
    env.update(extra)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    return env


def run_jobs(
    jobs: Sequence[Mapping[str, Any]],
    work_dir: Path,
    log_dir: Path,
    *,
    slots: Sequence[Sequence[GpuId] | None] = (None,),
    env: Mapping[str, str] | None = None,
    progress: Callable[[str], None] = lambda message: None,
    timeout_s: float | None = None,
    command: Callable[[Mapping[str, Any], Path, Sequence[GpuId] | None], list[str]] = command_for,
) -> list[JobRun]:
    """Run every job, at most len(slots) at a time, each slot's GPU set used by one job at a time; returns
    one JobRun per job, in input order. `command` builds a job's command line (tests swap in a probe)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    pending = list(enumerate(jobs))
    free = list(slots)
    running: dict[int, tuple[subprocess.Popen, Sequence[GpuId] | None, float, float, Any, Path, Path]] = {}
    results: dict[int, JobRun] = {}
    lock = threading.Lock()
    try:
        while pending or running:
            while pending and free:
                index, job = pending.pop(0)
                gpus = free.pop(0)
                name = f"{job['mode']}-{job.get('candidate', 'stored')}"
                job_path = work_dir / f"job-{name}.json"
                job_path.write_text(json.dumps(job, indent=1, default=str), encoding="utf-8")
                log_path = log_dir / f"{name}.log"
                Path(job["result_path"]).unlink(missing_ok=True)
                handle = log_path.open("w", encoding="utf-8")
                try:
                    argv = command(job, job_path, gpus)
                except BaseException:
                    handle.close()
                    raise
                started_at = time.time()
                process = CHILDREN.track(subprocess.Popen(argv, cwd=CODE_ROOT, env=_environment(env or {}, gpus),
                                                       stdout=handle, stderr=subprocess.STDOUT, start_new_session=True))
                progress(f"started {name} (pid {process.pid}{', gpus ' + ','.join(map(str, gpus)) if gpus else ''})")
                running[index] = (process, gpus, time.monotonic(), started_at, handle, job_path, log_path)
            for index in list(running):
                process, gpus, started, started_at, handle, job_path, log_path = running[index]
                code = process.poll()
                if code is None and timeout_s and time.monotonic() - started > timeout_s:
                    procs.stop_child_group(process)
                    code = process.returncode
                if code is None:
                    continue
                handle.close()
                result_path = Path(jobs[index]["result_path"])
                try:
                    result = json.loads(result_path.read_text(encoding="utf-8")) if code == 0 else None
                except (OSError, ValueError):
                    result = None
                with lock:
                    results[index] = JobRun(job_path, result_path, log_path, code, time.monotonic() - started, result,
                                            tuple(gpus) if gpus is not None else None, started_at, time.time())
                CHILDREN.untrack(process)
                del running[index]
                free.append(gpus)
            time.sleep(0.05)
    finally:
        for process, _, _, _, handle, _, _ in running.values():  # interrupted: leave no process behind
            procs.stop_child_group(process)
            CHILDREN.untrack(process)
            handle.close()
    return [results[i] for i in range(len(jobs))]
