"""Train candidates on a Prefect work pool (`training.work_pool`) instead of as local child processes.

Why: with several GPU servers the team's Prefect workers, not the daemon, own the GPUs; the daemon only
submits runs and waits. Each candidate becomes one run of the `specd-train-candidate` deployment
(`flows.training.pool`) carrying the job, the applied git sha and the repository URL.

What makes it safe:
- idempotency: every run is tagged with the candidate fingerprint; a daemon that restarts mid-apply
  adopts the run still scheduled or running instead of submitting a second one, and a new submission
  uses the idempotency key `<fingerprint>:<n>` (n = runs so far), so a retried request is the same run;
- a lost worker: a running run's heartbeat (a Prefect variable the flow bumps every few seconds) that
  stops for `training.heartbeat_timeout_s` means its worker died; the run is marked Crashed with that
  reason and submitted again (another worker takes it), up to `training.run_attempts` submissions. A
  run that Prefect itself reports Crashed is submitted again the same way. Every attempt is kept
  (`PoolRun.attempts`) and reaches the model's status message;
- once: the flow refuses to train a candidate whose artifact is already complete in the shared store,
  and a run declared lost stops its own training when it sees its state (see flows.training.pool).

Secrets: parameters carry the storage options as `${secret:NAME}` references, resolved on the worker.
Prefect is imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flows.pool_heartbeat import HeartbeatWatch, forget_heartbeat, mark_crashed
from flows.pool_result import read_result

ACTIVE = ("SCHEDULED", "PENDING", "RUNNING")
RETRYABLE = ("CRASHED",)


@dataclass
class PoolRun:
    """One candidate's outcome on the pool; shaped like launch.JobRun where train_model reads it."""

    job: Mapping[str, Any]
    result: dict[str, Any] | None = None
    returncode: int = 1  # 0: a result came back
    seconds: float = 0.0
    message: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)  # {run, worker, state, message}
    worker: str | None = None
    started_at: float = 0.0
    ended_at: float = 0.0

    def log_tail(self, lines: int = 12) -> str:
        return "\n".join(self.message.splitlines()[-lines:])

    @property
    def retried(self) -> bool:
        return len(self.attempts) > 1


def ensure_pool(client: Any, training: Any) -> Any:
    """The work pool (type process), its queues with their concurrency limits, and the deployment."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    from flows.training.pool import to_deployment

    pool = training.work_pool
    try:
        live = client.read_work_pool(pool)
        if training.pool_limit is not None and live.concurrency_limit != training.pool_limit:
            client.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=training.pool_limit))
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process", concurrency_limit=training.pool_limit))
    limits = dict(training.queue_limits)
    if training.work_queue and training.work_queue not in limits:
        limits[training.work_queue] = None
    for queue, limit in limits.items():
        try:
            found = client.read_work_queue_by_name(queue, work_pool_name=pool)
            if limit is not None and found.concurrency_limit != limit:
                client.update_work_queue(found.id, concurrency_limit=limit)
        except ObjectNotFound:
            client.create_work_queue(name=queue, work_pool_name=pool, concurrency_limit=limit)
    return to_deployment(pool, training.work_queue).apply(_sync=True)


@dataclass
class _Tracker:
    job: Mapping[str, Any]
    run: PoolRun
    run_id: str | None = None
    submitted: float = 0.0
    watch: HeartbeatWatch = field(default_factory=HeartbeatWatch)  # the run's heartbeat (flows.pool_heartbeat)
    done: bool = False


def dispatch(jobs: Sequence[Mapping[str, Any]], training: Any, *, git_sha: str, repo_url: str,
             storage_options: Mapping[str, str] | None = None, progress: Callable[[str], None] = lambda m: None,
             poll_s: float = 1.0, timeout_s: float | None = None) -> list[PoolRun]:
    """Submit every train job to the pool and wait for all; one PoolRun per job, in input order."""
    from prefect.client.orchestration import get_client

    trackers = [_Tracker(job, PoolRun(job)) for job in jobs]
    started = time.monotonic()
    with get_client(sync_client=True) as client:
        deployment_id = ensure_pool(client, training)
        for tracker in trackers:
            _submit(client, deployment_id, tracker, training, git_sha, repo_url, storage_options, progress, adopt=True)
        while not all(t.done for t in trackers):
            time.sleep(poll_s)
            for tracker in trackers:
                if not tracker.done:
                    _poll(client, deployment_id, tracker, training, git_sha, repo_url, storage_options, progress)
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                for tracker in trackers:
                    if not tracker.done:
                        _give_up(client, tracker, f"no result after {timeout_s:.0f} s")
    return [t.run for t in trackers]


def _submit(client: Any, deployment_id: Any, tracker: _Tracker, training: Any, git_sha: str, repo_url: str,
            storage_options: Mapping[str, str] | None, progress: Callable[[str], None], *, adopt: bool = False) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.training.pool import TAGS, fingerprint_tag

    job = dict(tracker.job)
    fp = job["lineage"]["candidate_fingerprint"]
    tag = fingerprint_tag(fp)
    earlier = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]), deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=50)
    active = [r for r in earlier if r.state_type is not None and r.state_type.value in ACTIVE]
    if adopt and active:  # a daemon restarted mid-apply: wait for the run already on the pool
        flow_run = active[0]
        progress(f"candidate {job['candidate']}: adopting run {flow_run.name} already on pool {training.work_pool}")
    else:
        job["data"] = {**job["data"], "storage_options": dict(storage_options or {})}  # references, not values
        attempt = len(earlier) + 1
        flow_run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"job": job, "git_sha": git_sha, "repo_url": repo_url},
            name=f"{job['model']}-{job['candidate']}-{fp[:8]}-{attempt}", tags=[*TAGS, tag, f"candidate:{job['candidate']}"],
            idempotency_key=f"{fp}:{attempt}", work_queue_name=training.work_queue)
        progress(f"candidate {job['candidate']}: submitted run {flow_run.name} to pool {training.work_pool}"
                 f"{' queue ' + training.work_queue if training.work_queue else ''} (attempt {attempt})")
    tracker.run_id = str(flow_run.id)
    tracker.submitted = time.monotonic()
    tracker.watch.restart()
    tracker.run.attempts.append({"run": str(flow_run.id), "name": flow_run.name, "worker": None, "state": "SCHEDULED", "message": ""})


def _poll(client: Any, deployment_id: Any, tracker: _Tracker, training: Any, git_sha: str, repo_url: str,
          storage_options: Mapping[str, str] | None, progress: Callable[[str], None]) -> None:
    flow_run = client.read_flow_run(tracker.run_id)
    state = flow_run.state_type.value if flow_run.state_type is not None else "SCHEDULED"
    attempt = tracker.run.attempts[-1]
    attempt["state"] = state
    reason = tracker.watch.lost(client, tracker.run_id, state, training.heartbeat_timeout_s)
    attempt["worker"] = tracker.watch.worker or attempt["worker"]
    if reason is not None:
        mark_crashed(client, tracker.run_id, reason)
        forget_heartbeat(client, tracker.run_id)
        attempt.update(state="CRASHED", message=reason)
        progress(f"candidate {tracker.job['candidate']}: run {attempt['name']}: {reason}")
        _retry_or_fail(client, deployment_id, tracker, training, git_sha, repo_url, storage_options, progress)
        return
    if state in ACTIVE:
        return
    message = (flow_run.state.message if flow_run.state else "") or ""
    attempt["message"] = message
    forget_heartbeat(client, tracker.run_id)  # finished one way or another: its heartbeat variable goes
    if state == "COMPLETED":
        result = read_result(client, tracker.run_id)
        if result is None:
            attempt["message"] = "completed without a specd-result artifact"
            _retry_or_fail(client, deployment_id, tracker, training, git_sha, repo_url, storage_options, progress)
            return
        attempt["worker"] = result.get("worker")
        _finish(tracker, result, 0, "")
        progress(f"candidate {tracker.job['candidate']}: {result.get('status')} on {result.get('worker')}")
        return
    if state in RETRYABLE:
        progress(f"candidate {tracker.job['candidate']}: run {attempt['name']} crashed ({message}); submitting again")
        _retry_or_fail(client, deployment_id, tracker, training, git_sha, repo_url, storage_options, progress)
        return
    if state in ("FAILED", "CANCELLED"):
        _finish(tracker, None, 1, f"run {attempt['name']} {state.lower()}: {message}")


def _retry_or_fail(client: Any, deployment_id: Any, tracker: _Tracker, training: Any, git_sha: str, repo_url: str,
                   storage_options: Mapping[str, str] | None, progress: Callable[[str], None]) -> None:
    if len(tracker.run.attempts) >= training.run_attempts:
        last = tracker.run.attempts[-1]
        _finish(tracker, None, 1, f"{len(tracker.run.attempts)} submission(s) failed; last: {last['state'].lower()} {last['message']}")
        return
    _submit(client, deployment_id, tracker, training, git_sha, repo_url, storage_options, progress)


def _give_up(client: Any, tracker: _Tracker, reason: str) -> None:
    mark_crashed(client, tracker.run_id, f"specd: {reason}")  # terminal: no worker starts it later
    forget_heartbeat(client, tracker.run_id)
    tracker.run.attempts[-1].update(state="CRASHED", message=reason)
    _finish(tracker, None, 1, reason)


def _finish(tracker: _Tracker, result: dict[str, Any] | None, code: int, message: str) -> None:
    run = tracker.run
    run.result, run.returncode, run.message, run.done = result, code, message, True
    tracker.done = True
    if result is not None:
        run.worker = result.get("worker")
        run.started_at = float(result.get("started_at") or 0.0)
        run.ended_at = float(result.get("ended_at") or 0.0)
        run.seconds = max(0.0, run.ended_at - run.started_at)
    else:
        run.seconds = time.monotonic() - tracker.submitted



def attempts_note(runs: Sequence[PoolRun]) -> str:
    """For the model's status: which candidates were retried after a lost worker, and where they finished."""
    notes = []
    for run in runs:
        if run.retried:
            lost = "; ".join(f"{a['name']}: {a['state'].lower()} ({a['message'] or 'no message'})" for a in run.attempts[:-1])
            notes.append(f"candidate {run.job['candidate']} retried on {run.worker or 'another worker'} after {lost}")
    return "; ".join(notes)
