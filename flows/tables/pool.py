"""A table build as a Prefect deployment run on a work pool (`tables.work_pool`): what a worker runs.

Why: a table too heavy for the daemon's machine is built where the team's Prefect workers are, through
the same pools and workers that train candidates (`specd worker --pool P`), never a scheduler of ours.
The daemon submits one run of `specd-build-table` per build (parameters: the build job, the applied git
sha, the repository URL); this flow, on the worker:

1. checks out exactly that sha (`flows.pool_checkout`), so the build runs the code and specs the plan showed;
2. rewrites the job's machine-local paths for this worker (the checkout as repo and data root, its own
   state directory for locks, spools and spill files) and resolves the storage options' `${secret:NAME}`
   references from this worker's environment (the job carries references only: Prefect stores parameters);
3. runs `python -m flows.tables.build job.json result.json` from the checkout — the one build entry point,
   so lineage, the quarantine and exactly-once (Delta app transactions keyed by the build) are the
   daemon's own, whichever machine commits;
4. beats the run's heartbeat meanwhile (flows.pool_heartbeat, shared with training), so the daemon tells
   a lost worker from a slow build; when the daemon has declared this run lost (no longer Running), the
   build process is stopped here too (another worker builds it again; Delta commits it once either way);
5. publishes the build's result payload (version, rows, quality, or the error) as a `specd-result`
   artifact, which the daemon reads over the Prefect API.

The lake must be reachable from every worker (s3://, or a path all of them mount): validate says so.
Imports prefect: only the daemon's apply path and the workers load it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow

from daemon.shared import procs
from daemon.shared.fsio import atomic_write_json
from flows.pool_checkout import ensure_checkout, worker_dir, worker_name
from flows.pool_heartbeat import Heartbeat
from flows.pool_result import RESULT_TYPE, publish_result  # noqa: F401 - RESULT_TYPE re-exported

FLOW_NAME = "specd-build-table"
DEPLOYMENT = "specd-build-table"
ENTRYPOINT = "flows.tables.pool.build_table"
TAGS = ("specd", "tables")


def table_tag(name: str) -> str:
    return f"specd-table:{name}"


def worker_job(job: dict[str, Any], checkout: Path, state_dir: Path) -> dict[str, Any]:
    """The daemon's job with this worker's paths and resolved storage options."""
    from daemon.shared.secrets import is_secret_ref, resolve_secret

    options = {k: resolve_secret(v) if is_secret_ref(v) else v for k, v in (job.get("storage_options") or {}).items()}
    data_root = job.get("data_root_rel", ".")
    return {**{k: v for k, v in job.items() if k != "data_root_rel"}, "repo_dir": str(checkout),
            "data_root": str(data_root if Path(data_root).is_absolute() else checkout / data_root),
            "state_dir": str(state_dir), "storage_options": options}


def _publish(run_id: str, result: dict[str, Any]) -> None:
    publish_result(run_id, result, f"specd table build result (ok={result.get('ok')})")


@flow(name=FLOW_NAME, retries=0, persist_result=False, log_prints=True)
def build_table(job: dict[str, Any], git_sha: str, repo_url: str) -> dict[str, Any]:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context and context.flow_run else "local"
    started_at = time.time()
    with Heartbeat(run_id, tags=TAGS) as beat:
        if beat.superseded:  # declared lost before it even started: another run builds this table
            raise RuntimeError(f"{worker_name()}: run superseded by the daemon before it started")
        checkout = ensure_checkout(repo_url, git_sha, worker_dir())
        run_dir = worker_dir() / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        local = worker_job(job, checkout, worker_dir() / "tables-state")
        job_path, result_path = run_dir / "job.json", run_dir / "result.json"
        env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONHASHSEED": "0"}
        print(f"{worker_name()}: building table {job.get('name')} at {git_sha[:12]} from {checkout}")
        try:
            atomic_write_json(job_path, local)  # 0600 from its first byte: it holds resolved storage credentials
            with (run_dir / "build.log").open("w", encoding="utf-8") as log:
                process = subprocess.Popen([sys.executable, "-m", "flows.tables.build", str(job_path), str(result_path)],
                                           cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                beat.children.append(process)  # stopped if the daemon declares this run lost
                try:
                    code = process.wait()
                finally:
                    procs.stop_child_group(process)
        finally:
            job_path.unlink(missing_ok=True)
        if beat.superseded:
            raise RuntimeError(f"{worker_name()}: run superseded by the daemon; build stopped")
        if result_path.is_file():
            result = json.loads(result_path.read_text(encoding="utf-8"))
        else:
            tail = (run_dir / "build.log").read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
            result = {"ok": False, "transient": True, "reason": "BuildCrashed",
                      "error": f"table {job.get('name')}: build process on {worker_name()} exited {code}: " + " | ".join(tail)}
        result = {**result, "worker": worker_name(), "run_id": run_id, "started_at": started_at, "ended_at": time.time()}
        _publish(run_id, result)
    return {k: result.get(k) for k in ("ok", "version", "worker")}


def to_deployment(pool: str, queue: str | None) -> Any:
    """The deployment the daemon registers on `pool` (module entrypoint, importable on every worker)."""
    from prefect.deployments.runner import EntrypointType

    deployment = build_table.to_deployment(name=DEPLOYMENT, entrypoint_type=EntrypointType.MODULE_PATH,
                                           tags=list(TAGS), work_pool_name=pool, work_queue_name=queue, _sync=True)
    deployment.entrypoint = ENTRYPOINT
    return deployment
