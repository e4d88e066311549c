"""One model apply: pin data, fingerprint candidates, train what is missing, re-score, decide, release.

Called by `ModelAdapter.apply` for create/update. Training and scoring run in subprocesses
(`flows.training.launch`); this module only builds jobs, reads their results and writes the release,
so the daemon process never imports torch or Lightning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.adapters.base import AdapterContext, pool_repo_url
from daemon.adapters.models import metrics as models_metrics
from daemon.adapters.models.check import live_columns
from daemon.core.kinds import kind_by_name
from daemon.core.state import ApplyOutcome
from daemon.shared.errors import ApplyError
from flows.training import registry
from flows.training.artifact import artifact_complete, record_decision
from flows.training.jobs import candidate_fingerprint, evaluate_job, train_job
from flows.training.launch import GpuId, command_for, gpu_slots, run_jobs, visible_gpus
from flows.training.promote import Rule, decide
from flows.training.schema import resolve_features

if TYPE_CHECKING:
    from daemon.core.graph import Resource


def _pin_data(name: str, table: str, uri: str, options: dict[str, str], pin: int | None = None) -> tuple[int, str | None, dict[str, str]]:
    version, data_id, columns, _ = _pin_data_state(name, table, uri, options, pin)
    return version, data_id, columns


def _pin_data_state(name: str, table: str, uri: str, options: dict[str, str], pin: int | None = None) -> tuple[int, str | None, dict[str, str], dict[str, Any]]:
    """(Delta version, data id, columns, lineage of that data: digest, rows, table fingerprint) to train on:
    the latest version, or `pin` (retrain.on: never with table_version)."""
    from flows.tables import DATA_DIGEST, DATA_ID, FINGERPRINT
    from flows.tables.delta_log import read_table_log

    log = read_table_log(uri, options or None)
    columns = live_columns(uri, options or None)
    if log is None or columns is None:
        raise ApplyError(f"model {name}: source table {table!r} does not exist yet at {uri}", transient=True)
    commit = log.latest if log.head_is_specd else None
    version = log.version
    if pin is not None:
        commit = next((c for c in log.commits if c.version == pin), None)
        if pin > log.version or (commit is not None and not commit.complete):
            raise ApplyError(f"model {name}: retrain.table_version {pin} of table {table!r} is not available (latest v{log.version})")
        version = pin
    meta = commit.metadata if commit is not None else {}
    lineage = {"data_digest": meta.get(DATA_DIGEST), "rows": commit.rows if commit is not None else None,
               "table_fingerprint": meta.get(FINGERPRINT)}
    return version, meta.get(DATA_ID), columns, lineage


AUTO_CPU_CANDIDATES = 4  # unset max_concurrent_candidates on CPU: one candidate per core, at most this many


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def candidate_concurrency(training: Any, cpu_count: int | None = None) -> int:
    """Candidates trained at once: the overlay's `max_concurrent_candidates`; unset, one per core on CPU
    (small models spend most of a run starting Python and Lightning, which parallelises well) and one
    on GPUs or `auto` (never two candidates on the same devices unknowingly)."""
    if training.max_concurrent_candidates is not None:
        return training.max_concurrent_candidates
    if training.accelerator != "cpu":
        return 1
    return max(1, min(AUTO_CPU_CANDIDATES, cpu_count or _cores()))


def training_resources(training: Any, environ: Mapping[str, str] | None = None,
                       cpu_count: int | None = None) -> tuple[dict[str, Any], list[Sequence[GpuId] | None], int | None]:
    """(resources for every job, one slot per concurrently running candidate, torch threads per CPU job).

    GPU: the GPUs (`training.gpu_ids`, else the visible ones) are cut into disjoint sets of `devices`, one
    candidate per set at a time; when none can be found, candidates run one at a time (never two on the
    same GPUs unknowingly). CPU: `candidate_concurrency` at once, the cores shared out between them.
    """
    resources = {"accelerator": training.accelerator, "devices": training.devices, "num_nodes": training.num_nodes,
                 "precision": training.precision, "strategy": training.strategy, "launcher": training.launcher,
                 "ddp_timeout_s": training.ddp_timeout_s}
    concurrency = candidate_concurrency(training, cpu_count)
    if training.accelerator in ("gpu", "cuda"):
        gpus: Sequence[GpuId] = training.gpu_ids or visible_gpus(environ)
        return resources, (gpu_slots(gpus, training.devices, concurrency) if gpus else [None]), None
    threads = max(1, (cpu_count or _cores()) // concurrency)
    return resources, [None] * concurrency, threads


def train_model(ctx: AdapterContext, resource: Resource, uri: str, options: dict[str, str], root: str, *,
                work_dir: Path, log_dir: Path, tensorboard_dir: str, trigger: dict[str, Any] | None = None) -> ApplyOutcome:
    """Train what is missing and write the release. `trigger` (why: a fired retrain policy, a sync, a spec
    change) is recorded in the release's lineage with the data version it trained on."""
    import time as _time

    spec, name, fingerprint = resource.spec, resource.name, resource.fingerprint
    version, data_id, columns, lineage = _pin_data_state(name, spec.data.table, uri, options, spec.retrain.table_version)
    features = resolve_features(columns, spec.data.target, spec.data.features, spec.data.exclude)
    unknown = [c for c in [*features, spec.data.target, *spec.sensitive_attributes] if c not in columns]
    if unknown:
        raise ApplyError(f"model {name}: columns {unknown} are not in table {spec.data.table!r} (version {version})")
    code_version = kind_by_name("model").code_version
    resources, slots, threads = training_resources(ctx.env.training)
    spec_data = dict(resource.data)
    selection = {"table": spec.data.table, "target": spec.data.target, "features": features}

    jobs: dict[str, dict[str, Any]] = {}
    for candidate in spec.candidates:
        config = spec.candidate_config(candidate)
        cfp = candidate_fingerprint(data=selection, task=spec.task, split=spec_data["split"], config=config, table_uri=uri,
                                    delta_version=version, data_id=data_id, code_version=code_version)
        jobs[candidate] = train_job(
            model=name, candidate=candidate, candidate_fp=cfp, model_fp=fingerprint, git_sha=ctx.revision,
            spec_data=spec_data, features=features, table_uri=uri, delta_version=version, data_id=data_id,
            storage_options=options, config=config, resources=resources, store_root=root, work_dir=work_dir,
            tensorboard_dir=tensorboard_dir, code_version=code_version,
        )
        jobs[candidate]["overrides"] = list(spec.candidates[candidate])  # TensorBoard hparams (not fingerprinted)
        if threads:
            jobs[candidate]["torch_threads"] = threads
    try:
        current = registry.current_release(name, root)
    except ValueError:  # a torn release pointer (CorruptState): no champion to compare with; rewritten below
        current = None
    champion = current.champion if current and current.champion and artifact_complete(current.champion, root) else None
    reused = {c: j["tag"] for c, j in jobs.items() if artifact_complete(j["tag"], root)}
    to_train = [j for c, j in jobs.items() if c not in reused]
    first = next(iter(jobs.values()))
    try:
        command_for(first, work_dir / "job.json", slots[0])
    except ValueError as exc:
        raise ApplyError(f"model {name}: {exc}") from None
    pool_runs: dict[str, Any] = {}
    if ctx.env.training.work_pool and to_train:  # several GPU servers: the pool's workers train them
        ctx.progress(f"model {name}: training {[j['candidate'] for j in to_train]} on work pool {ctx.env.training.work_pool}")
        pool_runs = train_on_pool(ctx, name, to_train)
        import_from_shared_store(ctx, name, root, [j["tag"] for j in to_train if pool_runs[j["candidate"]].result is not None])
        for job in to_train:  # already complete in the shared store (an earlier run finished it): re-score
            if (pool_runs[job["candidate"]].result or {}).get("status") == "stored":
                reused[job["candidate"]] = job["tag"]
        to_train = [j for j in to_train if j["candidate"] not in reused]
    score_tags = list(reused.values()) + ([champion] if champion and champion not in {j["tag"] for j in jobs.values()} else [])
    local = [] if pool_runs else list(to_train)
    launch = local + ([evaluate_job(first, score_tags, work_dir, fingerprint)] if score_tags else [])
    ctx.progress(f"model {name}: training {[j['candidate'] for j in local] or 'nothing'} locally, re-scoring {len(score_tags)} stored model(s)")
    runs = run_jobs(launch, work_dir, log_dir, slots=slots, env={"BENTOML_HOME": root}, progress=ctx.progress) if launch else []
    if pool_runs:
        launch = list(to_train) + launch
        runs = [pool_runs[j["candidate"]] for j in to_train] + list(runs)

    results: dict[str, dict[str, Any]] = {}
    crashed: list[str] = []
    scores: dict[str, Any] = {}
    for job, run in zip(launch, runs, strict=True):
        if job["mode"] == "evaluate":
            if run.result is None:
                crashed.append(f"re-scoring crashed (exit {run.returncode}): {run.log_tail()}")
            else:
                scores = run.result["scores"]
            continue
        if run.result is None:
            crashed.append(f"candidate {job['candidate']} crashed (exit {run.returncode}): {run.log_tail()}")
            continue
        results[job["candidate"]] = {**run.result, "seconds": round(run.seconds, 2)}
    if crashed:
        raise ApplyError(f"model {name}: champion unchanged; " + "\n".join(crashed))

    candidates: dict[str, dict[str, Any]] = {}
    for candidate, job in jobs.items():
        if candidate in reused:
            score = scores.get(job["tag"], {})
            status = "reused" if "metrics" in score else "failed"
            metrics = dict(score.get("metrics", {}))
            cv = _stored_cv(job["tag"], root)  # CV ran on the same training rows when it was trained
            if cv and metrics:
                metrics["cv"] = cv
            candidates[candidate] = {"tag": job["tag"], "status": status, "metrics": metrics,
                                     "message": score.get("error", "")}
        else:
            result = results[candidate]
            candidates[candidate] = {"tag": job["tag"], "status": result["status"], "metrics": result.get("metrics", {}),
                                     "message": result.get("message", ""), "train_seconds": result.get("train_seconds"),
                                     "samples_per_s": result.get("samples_per_s")}
    champion_metrics = {}
    if champion:
        owner = next((c for c, j in jobs.items() if j["tag"] == champion), None)
        champion_metrics = candidates[owner]["metrics"] if owner else (scores.get(champion) or {}).get("metrics", {})
    promotion = spec.promotion
    rule = Rule(promotion.metric, promotion.maximize, promotion.min_improvement,
                [g.model_dump() for g in promotion.guardrails])
    decision = decide(rule, candidates, champion, champion_metrics)
    release = registry.Release(
        model=name, fingerprint=fingerprint, champion=decision.champion, challengers=decision.challengers,
        decision=decision.reason, git_sha=ctx.revision, candidates=_compact(candidates),
        champion_metrics=_scalars(champion_metrics),
        data={"table": spec.data.table, "uri": uri, "delta_version": version, "data_id": data_id, "prune": spec.prune,
              **lineage, "trained_at": _time.time(), "trigger": {**(trigger or {}), "delta_version": version},
              "spec": spec_data,
              "promotion": {"metric": promotion.metric, "direction": spec.metric_direction(),
                            "min_improvement": promotion.min_improvement},
              "split": spec_data["split"],
              **({"pool": pool_record(ctx.env.training.work_pool, pool_runs)} if pool_runs else {})},
    )
    for candidate in candidates.values():
        if candidate["status"] in ("trained", "reused"):
            record_decision(candidate["tag"], fingerprint, decision.reason, root)
    registry.write_release(release, root)
    for candidate, info in candidates.items():
        models_metrics.record_candidate(name, candidate, info["metrics"], results.get(candidate, {}).get("seconds"))
    models_metrics.record_champion(name, decision.champion)
    models_metrics.record_promotion(name, decision.outcome)
    trained = [c for c in jobs if c not in reused]
    why = (trigger or {}).get("reason", "")
    message = f"{why.split(' (policy')[0]} → trained on {spec.data.table} v{version}; {decision.reason}" if why.startswith("retrain:") else decision.reason
    if pool_runs:
        message += f" ({release.data['pool']['note']})"
    return ApplyOutcome(message, {"champion": decision.champion, "challengers": list(decision.challengers),
                                          "trained": trained, "reused": list(reused), "outcome": decision.outcome,
                                          "delta_version": version, "trigger": trigger or {},
                                          "pool": release.data.get("pool", {}),
                                          # rows of the Prefect table artifact (daemon.runtime.prefect_runner.REPORT)
                                          "report": [{"candidate": c, "status": info["status"], "champion": info["tag"] == decision.champion,
                                                      **{k: v for k, v in info["metrics"].items() if isinstance(v, int | float)}}
                                                     for c, info in candidates.items()]})



def pool_record(pool: str, pool_runs: Mapping[str, Any]) -> dict[str, Any]:
    """What the release keeps of a pool apply: where each candidate ran, every attempt, and a status note."""
    from daemon.adapters.models.pool import attempts_note

    note = attempts_note(list(pool_runs.values()))
    return {"work_pool": pool, "note": f"work pool {pool}{'; ' + note if note else ''}",
            "candidates": {c: {"worker": r.worker, "attempts": r.attempts, "started_at": r.started_at, "ended_at": r.ended_at}
                           for c, r in pool_runs.items()}}


def train_on_pool(ctx: AdapterContext, name: str, to_train: list[dict[str, Any]]) -> dict[str, Any]:
    """{candidate: PoolRun}: each candidate as a deployment run on `training.work_pool`, at the applied sha."""
    from daemon.adapters.models.pool import dispatch

    if len(ctx.revision) != 40 or any(ch not in "0123456789abcdef" for ch in ctx.revision):
        raise ApplyError(f"model {name}: training.work_pool: workers check out a commit; revision {ctx.revision!r} is not one")
    if ctx.env.storage.models_uri:  # no shared disk: each worker trains into its own store and exports there
        to_train = [{**job, "models_uri": ctx.env.storage.models_uri} for job in to_train]
    try:
        runs = dispatch(to_train, ctx.env.training, git_sha=ctx.revision, repo_url=pool_repo_url(ctx, "training.work_pool"),
                        storage_options=ctx.env.storage.storage_options, progress=ctx.progress)
    except ApplyError:
        raise
    except Exception as exc:  # the Prefect API refused or went away: the apply is retried (transient)
        raise ApplyError(f"model {name}: work pool {ctx.env.training.work_pool}: {type(exc).__name__}: {exc}", transient=True) from None
    return {job["candidate"]: run for job, run in zip(to_train, runs, strict=True)}


def import_from_shared_store(ctx: AdapterContext, name: str, root: str, tags: list[str]) -> None:
    """The models the pool's workers exported to `storage.models_uri`, imported into the daemon's own store
    (scoring, promotion and serving read it); nothing to do on a shared filesystem (no models_uri)."""
    from flows.training.artifact import artifact_complete

    uri = ctx.env.storage.models_uri
    wanted = [t for t in tags if not artifact_complete(t, root)]
    if not uri or not wanted:
        return
    from daemon.shared.storage_uri import resolve_options
    from flows.training import shared_store

    try:
        missing = shared_store.run("ensure", root, uri, resolve_options(ctx.env.storage.storage_options), tags=wanted)["missing"]
    except (RuntimeError, OSError) as exc:
        raise ApplyError(f"model {name}: the shared model store is unreachable: {exc}", transient=True) from None
    if missing:
        raise ApplyError(f"model {name}: champion unchanged; the work pool reported {', '.join(missing)} trained, "
                         f"but {uri} does not hold them (the workers need storage.models_uri and its storage_options)")
    ctx.progress(f"model {name}: imported {len(wanted)} model(s) from {uri}")


def _stored_cv(tag: str, root: str) -> dict[str, Any]:
    from flows.training.artifact import read_model_info

    try:
        return dict(read_model_info(tag, root)["metadata"].get("cv") or {})
    except (OSError, ValueError):
        return {}


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    for key in ("confusion_matrix", "fairness", "cv", "per_group"):
        if key in metrics:
            out[key] = metrics[key]
    return out


def _compact(candidates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {name: {**info, "metrics": _scalars(info.get("metrics") or {})} for name, info in candidates.items()}



def preview(ctx: AdapterContext, resource: Resource, uri: str, options: dict[str, str], root: str) -> tuple[list[str], list[str], float | None]:
    """For the plan text: (candidates to train, candidates reused from the store, rough minutes).

    Uses the table as it is live now (a table rebuilt in the same apply retrains everything) and the
    training times recorded in the model's current release. Light: reads the Delta log and store files.
    """
    from flows.training.artifact import candidate_tag, model_dir

    spec = resource.spec
    version, data_id, columns = _pin_data(resource.name, spec.data.table, uri, options, spec.retrain.table_version)
    features = resolve_features(columns, spec.data.target, spec.data.features, spec.data.exclude)
    selection = {"table": spec.data.table, "target": spec.data.target, "features": features}
    code_version = kind_by_name("model").code_version
    to_train, reused = [], []
    for candidate in spec.candidates:
        cfp = candidate_fingerprint(data=selection, task=spec.task, split=dict(resource.data)["split"], config=spec.candidate_config(candidate),
                                    table_uri=uri, delta_version=version, data_id=data_id, code_version=code_version)
        stored = (model_dir(candidate_tag(resource.name, candidate, cfp), root) / "model.yaml").is_file()
        (reused if stored else to_train).append(candidate)
    current = registry.current_release(resource.name, root)
    seconds = [c.get("train_seconds") for c in (current.candidates if current else {}).values()]
    seconds = [s for s in seconds if isinstance(s, int | float)]
    if not to_train or not seconds:
        return to_train, reused, None
    per_candidate = max(seconds) + 6.0  # process start and Lightning import (~5 s) included
    waves = -(-len(to_train) // candidate_concurrency(ctx.env.training))
    return to_train, reused, per_candidate * waves / 60
