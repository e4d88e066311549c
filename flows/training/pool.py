"""A candidate's training as a Prefect deployment run on a work pool: what a worker on a GPU server runs.

Why a deployment and not our own scheduler: teams that own several GPU servers already run Prefect
workers (`prefect worker start --pool P --type process`); the pool's and the workers' concurrency
limits decide how many candidates train at once per server. The daemon submits one run of the
`specd-train-candidate` deployment per candidate (parameters: the training job, the applied git sha and
the repository URL); this flow, on the worker:

1. checks out exactly that sha into the worker's own directory (`$SPECD_WORKER_DIR/checkouts/<sha>`,
   made atomically, reused by later runs), so every worker runs the code the plan showed;
2. returns at once when the candidate's artifact is already complete in the shared store (another
   worker finished it: nothing trains twice to completion for one candidate fingerprint);
3. runs `python -m flows.training.run job.json` from that checkout, in its own session, on a set of
   this server's GPUs no other run of the worker holds (`gpu_lease`);
4. beats a heartbeat (flows.pool_heartbeat: a Prefect variable `specd-hb-<run id>`, a counter) every few seconds, so the
   daemon can tell a lost worker from a slow one; when the daemon has declared this run lost (its state
   is no longer RUNNING), the training is stopped here too, so a worker that only lost its network
   never finishes a candidate that another worker is training again;
5. without a shared disk (`job.models_uri`, the environment's `storage.models_uri`), trains into the
   worker's own store (`$SPECD_WORKER_DIR/bentoml`) and exports the model there (flows.training.shared_store)
   before it reports; step 2 then asks the models URI instead of the store;
6. publishes the run's result (metrics, the worker's name, start/end stamps) as an artifact of type
   `specd-result`, which the daemon reads over the Prefect API (no shared disk needed for results).

Imports prefect: only the daemon's apply path and the workers load it, never `plan`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from prefect import flow

from daemon.shared import procs
from daemon.shared.fsio import atomic_write_json
from flows.pool_checkout import ensure_checkout, worker_dir, worker_name
from flows.pool_heartbeat import Heartbeat, heartbeat_name  # noqa: F401  (shared with table builds; the name, for callers)
from flows.pool_result import RESULT_TYPE, publish_result  # noqa: F401 - RESULT_TYPE re-exported
from flows.training.gpu_lease import gpu_lease

FLOW_NAME = "specd-train-candidate"
DEPLOYMENT = "specd-train-candidate"
ENTRYPOINT = "flows.training.pool.train_candidate"  # importable by the worker (not __main__)
TAGS = ("specd", "training")


def fingerprint_tag(candidate_fp: str) -> str:
    return f"specd-fp:{candidate_fp[:32]}"


def _publish(run_id: str, result: dict[str, Any]) -> None:
    publish_result(run_id, result, f"specd candidate result ({result.get('status')})")


@flow(name=FLOW_NAME, retries=0, persist_result=False, log_prints=True)
def train_candidate(job: dict[str, Any], git_sha: str, repo_url: str) -> dict[str, Any]:
    from prefect.context import FlowRunContext

    from daemon.shared.secrets import is_secret_ref, resolve_secret

    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context and context.flow_run else "local"
    started_at = time.time()
    base = {"worker": worker_name(), "run_id": run_id, "started_at": started_at, "candidate": job.get("candidate"),
            "tag": job.get("tag"), "git_sha": git_sha}
    with Heartbeat(run_id, tags=TAGS) as beat:
        if beat.superseded:  # declared lost before it even started: another run has this candidate
            raise RuntimeError(f"{base['worker']}: run superseded by the daemon before it started")
        options = {k: resolve_secret(v) if is_secret_ref(v) else v for k, v in (job["data"].get("storage_options") or {}).items()}
        models_uri = job.get("models_uri")  # no shared disk: this worker's own store, exported to the models URI
        store = str(worker_dir() / "bentoml") if models_uri else job["store_root"]
        if _already_stored(job["tag"], store, models_uri, options):
            result = {**base, "status": "stored", "ended_at": time.time(),
                      "message": "already complete in the shared store (trained by an earlier run)"}
            _publish(run_id, result)
            return result
        checkout = ensure_checkout(repo_url, git_sha, worker_dir())
        run_dir = worker_dir() / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        local_job = {**job, "data": {**job["data"], "storage_options": options}, "result_path": str(run_dir / "result.json"),
                     "tensorboard_dir": str(run_dir / "tensorboard"), "store_root": store}
        job_path = run_dir / "job.json"
        atomic_write_json(job_path, local_job)  # 0600 from its first byte: it holds resolved storage credentials
        env = {**os.environ, "PYTHONPATH": str(checkout), "BENTOML_HOME": store, "PYTHONHASHSEED": "0"}
        print(f"{base['worker']}: training {job.get('candidate')} ({job['tag']}) at {git_sha[:12]} from {checkout}")
        with (run_dir / "train.log").open("w", encoding="utf-8") as log, gpu_lease(job.get("resources") or {}, worker_dir()) as gpus:
            if gpus is not None:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
                print(f"{base['worker']}: GPUs {env['CUDA_VISIBLE_DEVICES']}")
            process = subprocess.Popen([sys.executable, "-m", "flows.training.run", str(job_path)], cwd=checkout, env=env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            beat.children.append(process)  # stopped if the daemon declares this run lost
            try:
                code = process.wait()
            finally:
                procs.stop_child_group(process)
        if beat.superseded:
            raise RuntimeError(f"{base['worker']}: run superseded by the daemon; training stopped")
        tail = "\n".join((run_dir / "train.log").read_text(encoding="utf-8", errors="replace").splitlines()[-12:])
        if code != 0:
            raise RuntimeError(f"{base['worker']}: candidate {job.get('candidate')} exited {code}:\n{tail}")
        result = {**json.loads((run_dir / "result.json").read_text(encoding="utf-8")), **base, "ended_at": time.time()}
        if models_uri and result.get("status") == "trained":  # before the result: the daemon imports it from there
            from flows.training import shared_store

            done = shared_store.run("export", store, models_uri, options or None, tags=[job["tag"]])
            print(f"{base['worker']}: exported {job['tag']} to {models_uri} ({len(done['uploaded'])} uploaded)")
            result["exported_to"] = models_uri
        _publish(run_id, result)
    return {k: result.get(k) for k in ("status", "worker", "tag")}


def _already_stored(tag: str, store: str, models_uri: str | None, options: dict[str, str]) -> bool:
    """Trained to completion by an earlier run: in the shared filesystem store, or in the models URI."""
    from flows.training.artifact import artifact_complete

    if models_uri:
        from daemon.shared import storage_uri
        from flows.training.shared_store import archive_uri

        return storage_uri.exists(archive_uri(models_uri, tag), options or None)
    return artifact_complete(tag, store)


def to_deployment(pool: str, queue: str | None) -> Any:
    """The deployment the daemon registers on `pool` (module entrypoint, importable on every worker)."""
    from prefect.deployments.runner import EntrypointType

    deployment = train_candidate.to_deployment(name=DEPLOYMENT, entrypoint_type=EntrypointType.MODULE_PATH,
                                               tags=list(TAGS), work_pool_name=pool, work_queue_name=queue, _sync=True)
    deployment.entrypoint = ENTRYPOINT
    return deployment
