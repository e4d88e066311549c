"""Dispatch overhead per candidate: through a Prefect work pool vs a local child process, same tiny candidate.

    python tests/bench/bench_dispatch.py [--runs N] [--epochs E] [--tables]

Both paths train the same job (the example penguin model, candidate `a`, E epochs) on the same Delta
table into the same BentoML store; each run uses a fresh candidate fingerprint so that both really train.
Local: `flows.training.launch.run_jobs` (what the daemon does without `training.work_pool`). Pool:
`daemon.adapters.models.pool.dispatch` to a real `specd worker --limit 1` (a `prefect worker start
--type process`, polling every second: PREFECT_WORKER_QUERY_SECONDS=1; Prefect's default is 10 s, which
adds up to 10 s per candidate), on the Prefect API of PREFECT_API_URL or a local server started for the run
(SQLite: one worker only). The worker's checkout of the sha is made before timing (it is reused by every
later run of that sha on the worker). Prints min/median/max over N runs of:

- seconds per candidate, local and through the pool, their ratio, and the overhead (pool − local);

and checks what the pool must not change: the same metrics from both paths (same code, data and seed),
and each candidate once in the store.

`--tables` also builds the example `bronze_penguins` table N times each way on the same worker: locally
(the daemon's build processes) and as a `specd-build-table` run on the pool (`tables.work_pool`), each
into a fresh lake directory (an absolute path: the "shared path" case), and prints seconds per build,
ratio and overhead, checking that both paths commit version 0 with the same rows.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def make_job(scratch: Path, uri: str, store: str, epochs: int, fp: str) -> dict:
    from daemon.adapters.models.train import training_resources
    from daemon.schema.environment import TrainingSection
    from flows.training.jobs import train_job
    from flows.training.schema import resolve_features
    from tests.helpers.models import model_resource, small_spec

    resource = model_resource(small_spec(trainer__epochs=epochs))
    spec = resource.spec
    columns = {"penguin_id": "long", "species": "string", "island": "string", "bill_length_mm": "double",
               "bill_depth_mm": "double", "flipper_length_mm": "double", "body_mass_g": "double", "year": "long", "is_male": "long"}
    features = resolve_features(columns, spec.data.target, spec.data.features, spec.data.exclude)
    resources, _, threads = training_resources(TrainingSection(max_concurrent_candidates=1))
    job = train_job(model=resource.name, candidate="a", candidate_fp=fp, model_fp=resource.fingerprint, git_sha="bench",
                    spec_data=dict(resource.data), features=features, table_uri=uri, delta_version=0, data_id=None,
                    storage_options={}, config=spec.candidate_config("a"), resources=resources, store_root=store,
                    work_dir=scratch / "work", tensorboard_dir=str(scratch / "tb"), code_version="bench")
    job["torch_threads"] = threads
    return job


def wait_for_worker(pool: str, timeout: float = 120.0) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            try:
                if client.read_workers_for_work_pool(pool):
                    return
            except Exception:
                pass
        time.sleep(0.5)
    raise RuntimeError(f"no worker joined pool {pool} within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--tables", action="store_true", help="also time table builds through the pool vs locally")
    args = parser.parse_args()

    from tests.bench.prefect_env import prefect_api
    from tests.helpers.models import write_penguin_table

    scratch = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    uri, store = str(scratch / "lake" / "gold"), str(scratch / "bentoml")
    write_penguin_table(uri)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    with prefect_api() as api:
        from prefect.client.orchestration import get_client

        from daemon.adapters.models.pool import dispatch, ensure_pool
        from daemon.schema.environment import TrainingSection
        from flows.training.launch import run_jobs
        from flows.training.pool import ensure_checkout

        training = TrainingSection(work_pool="bench-dispatch", heartbeat_timeout_s=60)
        with get_client(sync_client=True) as client:
            ensure_pool(client, training)
        worker_dir = scratch / "worker"
        ensure_checkout(str(REPO), sha, worker_dir)
        env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_HOME": str(scratch / "wp"),
               "SPECD_HEARTBEAT_S": "1"}
        log = (scratch / "worker.log").open("wb")
        worker = subprocess.Popen([sys.executable, "-m", "daemon.cli", "worker", "--pool", training.work_pool, "--limit", "1",
                                   "--workdir", str(worker_dir), "--name", "bench"], cwd=REPO, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        local_s, pool_s, same = [], [], []
        tables: dict[str, list] = {"local": [], "pool": [], "rows": []}
        try:
            wait_for_worker(training.work_pool)
            for run in range(args.runs):
                fps = [hashlib.sha256(f"bench-{run}-{mode}-{time.time()}".encode()).hexdigest() for mode in ("local", "pool")]
                started = time.perf_counter()
                local = run_jobs([make_job(scratch, uri, store, args.epochs, fps[0])], scratch / "work", scratch / "logs",
                                 env={"BENTOML_HOME": store})[0]
                local_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                pooled = dispatch([make_job(scratch, uri, store, args.epochs, fps[1])], training, git_sha=sha,
                                  repo_url=str(REPO), poll_s=0.2)[0]
                pool_s.append(time.perf_counter() - started)
                if local.result is None or pooled.result is None:
                    raise RuntimeError(f"a run failed: local {local.returncode} {local.log_tail()} / pool {pooled.message}")
                a, b = local.result["metrics"], pooled.result["metrics"]
                same.append(all(abs(float(a[k]) - float(b[k])) < 1e-6 for k in a if isinstance(a[k], int | float)))
            if args.tables:
                bench_tables(scratch, sha, api, training.work_pool, args.runs, tables)
        finally:
            worker.send_signal(signal.SIGINT)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
            log.close()
    stored = sorted(p.name for p in (Path(store) / "models" / "penguin_sex").iterdir() if p.is_dir())
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"runs: {args.runs}, epochs {args.epochs}, one worker (limit 1), poll 1 s")
    print(f"local launch s/candidate (min/median/max): {spread(local_s)}")
    print(f"work pool s/candidate (min/median/max): {spread(pool_s)}")
    print(f"ratio pool/local (min/median/max): {spread([p / q for p, q in zip(pool_s, local_s, strict=True)])}")
    print(f"overhead pool-local s (min/median/max): {spread([p - q for p, q in zip(pool_s, local_s, strict=True)])}")
    print(f"same metrics from both paths: {all(same)}")
    print(f"models in the store: {len(stored)} (expected {2 * args.runs})")
    tables_ok = True
    if args.tables:
        print(f"table build local s (min/median/max): {spread(tables['local'])}")
        print(f"table build pool s (min/median/max): {spread(tables['pool'])}")
        print(f"table ratio pool/local (min/median/max): {spread([p / q for p, q in zip(tables['pool'], tables['local'], strict=True)])}")
        print(f"table overhead pool-local s (min/median/max): {spread([p - q for p, q in zip(tables['pool'], tables['local'], strict=True)])}")
        tables_ok = len(tables["rows"]) == args.runs and all(a == b and a > 0 for a, b in tables["rows"])
        print(f"same rows from both table paths: {tables_ok} {tables['rows'][:1]}")
    return 0 if all(same) and len(stored) == 2 * args.runs and tables_ok else 1


def bench_tables(scratch: Path, sha: str, api: str, pool: str, runs: int, out: dict[str, list]) -> None:
    """bronze_penguins built `runs` times locally and on the pool, each into a fresh lake directory."""
    from dataclasses import replace

    from daemon.adapters.tables.adapter import TableAdapter
    from daemon.core.plan import Action, Op
    from daemon.runtime.reconcile import context_for, load_desired

    os.environ["SPECD_REPO_URL"] = str(REPO)  # where the worker clones the sha from
    desired = load_desired(REPO, "dev", sha, (f"env.prefect.api_url={api}", f"env.storage.root={scratch / 'lake-t'}"))
    ctx = context_for(desired, scratch / "home")
    table = next(r for r in desired.graph.resources if r.kind == "table" and r.name == "bronze_penguins")
    for run in range(runs):
        versions = []
        for mode in ("local", "pool"):
            storage = ctx.env.storage.model_copy(update={"root": str(scratch / f"lake-{mode}-{run}")})
            tables = ctx.env.tables.model_copy(update={"work_pool": pool if mode == "pool" else None})
            adapter = TableAdapter(replace(ctx, env=ctx.env.model_copy(update={"storage": storage, "tables": tables})))
            started = time.perf_counter()
            outcome = adapter.apply(Action("table", table.name, Op.CREATE, "bench", table.fingerprint, None), table)
            out[mode].append(time.perf_counter() - started)
            if mode == "pool" and "[built on bench]" not in outcome.message:
                raise RuntimeError(f"the pool build did not run on the worker: {outcome.message}")
            versions.append((outcome.details.get("version"), sum((outcome.details.get("rows") or {}).values())
                             if isinstance(outcome.details.get("rows"), dict) else outcome.details.get("rows")))
        out["rows"].append(tuple(v[1] for v in versions) if all(v[0] == 0 for v in versions) else (0, 0))


if __name__ == "__main__":
    sys.exit(main())
