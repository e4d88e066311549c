"""Build a table on a Prefect work pool (`tables.work_pool`) instead of in the daemon's build processes.

Why: some builds belong on bigger machines than the daemon's; the team's Prefect workers already run
there. The daemon submits one run of the `specd-build-table` deployment (`flows.tables.pool`) with the
build job, the applied git sha and the repository URL, waits for it, and reads the build's result
payload from the run's `specd-result` artifact — the same payload a local build returns, so
`TablesAdapter.build` records version, rows and quality the same way.

Safe to repeat: exactly-once lives in the build itself (Delta app transactions keyed by the build), so
a build submitted twice commits once. A daemon restarted mid-build adopts the run still scheduled or
running for the same table and fingerprint instead of submitting another; a run that Prefect reports
Crashed is submitted again, up to `tables.run_attempts` times; one with no result after
`tables.build_timeout_s` is marked Crashed and the action fails as transient (retried next cycle).
A lost worker (killed, its machine gone) is noticed by the run's heartbeat, as for training candidates
(flows.pool_heartbeat): silent for `tables.heartbeat_timeout_s` (3× before its first beat), the run is
marked Crashed with that reason and submitted again like any crashed run — not only at the timeout.

Secrets: the job carries the storage options as `${secret:NAME}` references (Prefect stores
parameters), resolved on the worker. Prefect is imported inside the functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from daemon.adapters.base import AdapterContext, pool_repo_url
from daemon.shared.errors import ApplyError
from flows.pool_heartbeat import HeartbeatWatch, forget_heartbeat, mark_crashed
from flows.pool_result import read_result

ACTIVE = ("SCHEDULED", "PENDING", "RUNNING")


def pool_job(ctx: AdapterContext, job: dict[str, Any]) -> dict[str, Any]:
    """The job as it travels: secret references instead of values, no paths of the daemon's machine."""
    out = {k: v for k, v in job.items() if k not in ("repo_dir", "state_dir", "data_root")}
    out["storage_options"] = dict(ctx.env.storage.storage_options)  # references, resolved on the worker
    out["data_root_rel"] = ctx.env.storage.data_root
    return out



def _ensure(client: Any, pool: str, queue: str | None) -> Any:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    from flows.tables.pool import to_deployment

    try:
        client.read_work_pool(pool)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    if queue:
        try:
            client.read_work_queue_by_name(queue, work_pool_name=pool)
        except ObjectNotFound:
            client.create_work_queue(name=queue, work_pool_name=pool)
    return to_deployment(pool, queue).apply(_sync=True)


def build_on_pool(ctx: AdapterContext, job: dict[str, Any], *, poll_s: float = 1.0,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The build's result payload (`ok`, version, rows... or `error`, `reason`, `transient`)."""
    git_sha = str(job.get("git_sha") or "")
    if len(git_sha) != 40 or any(ch not in "0123456789abcdef" for ch in git_sha):
        raise ApplyError(f"table {job['name']}: tables.work_pool: workers check out a commit; revision {git_sha!r} is not one")
    try:
        return _dispatch(ctx, pool_job(ctx, job), git_sha, pool_repo_url(ctx, "tables.work_pool"), poll_s, progress or ctx.progress)
    except ApplyError:
        raise
    except Exception as exc:  # the Prefect API refused or went away: retried next cycle
        raise ApplyError(f"table {job['name']}: work pool {ctx.env.tables.work_pool}: {type(exc).__name__}: {exc}",
                         transient=True) from None


def _dispatch(ctx: AdapterContext, job: dict[str, Any], git_sha: str, url: str, poll_s: float,
              progress: Callable[[str], None]) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterTags

    from flows.tables.pool import TAGS, table_tag

    tables = ctx.env.tables
    name = job["name"]
    tags = [*TAGS, table_tag(name), f"specd-fp:{job['fingerprint'][:32]}", f"git:{git_sha[:12]}"]
    with get_client(sync_client=True) as client:
        deployment_id = _ensure(client, tables.work_pool, tables.work_queue)
        earlier = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=tags[2:]), deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])), limit=20)
        active = [r for r in earlier if r.state_type is not None and r.state_type.value in ACTIVE]
        attempts: list[str] = []
        run = active[0] if active else None
        if run is not None:
            progress(f"table {name}: adopting build run {run.name} already on pool {tables.work_pool}")
        while True:
            if run is None:
                run = client.create_flow_run_from_deployment(
                    deployment_id, parameters={"job": job, "git_sha": git_sha, "repo_url": url}, tags=tags,
                    name=f"{name}-{job['fingerprint'][:8]}-{len(attempts) + 1}", work_queue_name=tables.work_queue)
                progress(f"table {name}: submitted build run {run.name} to pool {tables.work_pool}")
            attempts.append(run.name)
            started = time.monotonic()
            state, lost, watch = "SCHEDULED", None, HeartbeatWatch()
            while state in ACTIVE:
                if time.monotonic() - started > tables.build_timeout_s:
                    mark_crashed(client, str(run.id), f"specd: no result after {tables.build_timeout_s:.0f} s")
                    forget_heartbeat(client, str(run.id))
                    return {"ok": False, "transient": True, "reason": "PoolTimeout",
                            "error": f"table {name}: build run {run.name} on pool {tables.work_pool}: no result after "
                                     f"{tables.build_timeout_s:.0f} s (nothing committed by specd's side; retried next cycle)"}
                time.sleep(poll_s)
                current = client.read_flow_run(run.id)
                state = current.state_type.value if current.state_type is not None else "SCHEDULED"
                lost = watch.lost(client, str(run.id), state, tables.heartbeat_timeout_s)
                if lost is not None:  # its worker died: Crashed now, submitted again below
                    mark_crashed(client, str(run.id), lost)
                    state = "CRASHED"
            forget_heartbeat(client, str(run.id))  # finished one way or another: its heartbeat variable goes
            message = lost or (current.state.message if current.state else "") or ""
            result = read_result(client, str(run.id))
            if state == "COMPLETED" and result is not None:
                note = f" (attempts: {', '.join(attempts)})" if len(attempts) > 1 else ""
                if result.get("ok"):
                    result["message"] = f"{result.get('message', '')} [built on {result.get('worker')}{note}]".strip()
                return result
            if state == "CRASHED" and len(attempts) < tables.run_attempts:
                progress(f"table {name}: build run {run.name} crashed ({message}); submitting again")
                run = None
                continue
            return {"ok": False, "transient": state == "CRASHED", "reason": "PoolRunFailed",
                    "error": f"table {name}: build run {run.name} on pool {tables.work_pool} {state.lower()}: {message}"}

