"""Launch candidate processes: `python -m flows.training.run job.json`, concurrently on disjoint GPU sets.

Each job runs in its own session (process group) so that it — and any DDP ranks Lightning or torchrun
start under it — can be stopped as a unit; nothing is left behind when the caller is interrupted. GPU
sets come from the environment's `training.gpu_ids` split into groups of `devices`, one group per
concurrently running candidate (`CUDA_VISIBLE_DEVICES`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CODE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `flows` and `daemon` packages


@dataclass(frozen=True)
class JobRun:
    job_path: Path
    result_path: Path
    log_path: Path
    returncode: int
    seconds: float
    result: dict[str, Any] | None

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def gpu_slots(gpu_ids: Sequence[int], devices: int | str, concurrency: int) -> list[list[int] | None]:
    """Disjoint GPU sets, one per concurrent slot; [None] * concurrency when no GPU ids are configured."""
    if not gpu_ids:
        return [None] * max(1, concurrency)
    per_job = len(gpu_ids) if devices in ("auto", -1, "-1") else max(1, int(devices))
    slots = [list(gpu_ids[i:i + per_job]) for i in range(0, len(gpu_ids) - per_job + 1, per_job)]
    return slots[:max(1, concurrency)] or [list(gpu_ids)]


def command_for(job: Mapping[str, Any], job_path: Path) -> list[str]:
    """torchrun when the job asks for several processes per node via `launcher: torchrun`, else python -m."""
    resources = job.get("resources", {})
    if resources.get("launcher") == "torchrun":
        nproc = str(resources.get("devices", 1))
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                "-m", "flows.training.run", str(job_path)]
    return [sys.executable, "-m", "flows.training.run", str(job_path)]


def _environment(extra: Mapping[str, str], gpus: list[int] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CODE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("PYTHONHASHSEED", "0")
    env.update(extra)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    return env


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def run_jobs(
    jobs: Sequence[Mapping[str, Any]],
    work_dir: Path,
    log_dir: Path,
    *,
    slots: Sequence[list[int] | None] = (None,),
    env: Mapping[str, str] | None = None,
    progress: Callable[[str], None] = lambda message: None,
    timeout_s: float | None = None,
) -> list[JobRun]:
    """Run every job (at most len(slots) at a time); returns one JobRun per job, in input order."""
    work_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    pending = list(enumerate(jobs))
    free = list(slots)
    running: dict[int, tuple[subprocess.Popen, list[int] | None, float, Any, Path, Path]] = {}
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
                process = subprocess.Popen(command_for(job, job_path), cwd=CODE_ROOT, env=_environment(env or {}, gpus),
                                           stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
                progress(f"started {name} (pid {process.pid}{', gpus ' + str(gpus) if gpus else ''})")
                running[index] = (process, gpus, time.monotonic(), handle, job_path, log_path)
            for index in list(running):
                process, gpus, started, handle, job_path, log_path = running[index]
                code = process.poll()
                if code is None and timeout_s and time.monotonic() - started > timeout_s:
                    _stop(process)
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
                    results[index] = JobRun(job_path, result_path, log_path, code, time.monotonic() - started, result)
                del running[index]
                free.append(gpus)
            time.sleep(0.05)
    finally:
        for process, _, _, handle, _, _ in running.values():  # interrupted: leave no process behind
            _stop(process)
            handle.close()
    return [results[i] for i in range(len(jobs))]
