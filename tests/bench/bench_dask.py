"""Benchmark: one table built by the Dask engine (2 workers on 127.0.0.1) vs the DuckDB engine.

    python tests/bench/bench_dask.py [--rows 4000000] [--runs 3] [--workers 2]

The input is `--rows` rows in 8 Parquet files (row groups of rows/32), built through the real build
entry point (`flows.tables.build.run_job`) with the same spec — clean (filter, normalise, cast), a derived
column, a quality rule that quarantines, `hash` privacy on an e-mail column — once per engine per run,
each into a fresh lake. The Dask builds submit to one running LocalCluster (scheduler address), so the
cluster's start is measured on its own (`cluster start`, what `scheduler: local` adds to every build).
Printed, min/median/max over the runs:

- `duckdb` / `dask`: wall seconds of the build, and CPU seconds (DuckDB: this process; Dask: this
  process plus the cluster's processes, from psutil) — on a 2-core machine shared with other work the
  CPU figure is the one to compare, and Dask cannot win there: it only pays off across machines;
- `ratio dask/duckdb wall|cpu`: medians;
- `per-partition overhead`: (64 one-row-group partitions − 1 partition of the same 6,400 rows) / 63 (with
  `--overhead-parts 64`), the
  fixed cost of one more partition (task, DuckDB connection, Parquet file, add action);
- every run checks that both engines wrote the same rows count and the same data digest.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SPEC = {
    "source": {"type": "file", "path": "events/*.parquet", "format": "parquet"},
    "clean": {"where": "amount >= 0", "columns": {"city": {"normalize": {"trim": True, "case": "lower"}},
                                                   "score": {"cast": "float64"}}},
    "features": {"columns": {"amount_x2": "amount * 2"}},
    "quality": {"action": "quarantine", "rules": {"small": "amount < 990"}},
    "privacy": {"columns": {"email": {"mode": "hash", "key": "secret:BENCH_DASK_HASH_KEY"}}},
}


def make_input(folder: Path, rows: int, files: int = 8, groups_per_file: int = 4) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    per_file = max(1, rows // files)
    cities = np.array([" Berlin", "paris ", "Rome", "Oslo"])
    for k in range(files):
        ids = np.arange(k * per_file, (k + 1) * per_file, dtype=np.int64)
        table = pa.table({
            "id": ids,
            "amount": (ids * 37) % 1000 - 5,
            "city": pa.array(cities[ids % 4]),
            "score": pa.array((ids % 13).astype(str)),
            "email": pa.array(np.char.add("user", (ids % 100_000).astype(str))),
        })
        pq.write_table(table, folder / f"part-{k}.parquet", row_group_size=max(1, per_file // groups_per_file))


def job(data_root: Path, lake: Path, engine: str, dask: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import asdict

    from daemon.schema.table import TableSpec
    from flows.tables.build import BuildJob

    spec = TableSpec.model_validate({**SPEC, "engine": engine}).model_dump(mode="json", by_alias=True)
    return asdict(BuildJob(name="events", spec=spec, fingerprint="bench", git_sha="bench", storage_root=str(lake),
                           data_root=str(data_root), repo_dir=str(data_root), state_dir=str(lake / "_state"), dask=dask))


def tree_cpu(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for p in [process, *process.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def timed_build(data: dict[str, Any], pids: list[int]) -> tuple[float, float, dict[str, Any]]:
    import os

    from flows.tables.build import run_job

    cpu0, wall0 = tree_cpu(pids) if pids else 0.0, time.perf_counter()
    own0 = os.times()
    result = run_job(data)
    own1 = os.times()
    wall = time.perf_counter() - wall0
    cpu = (own1.user - own0.user) + (own1.system - own0.system) + (tree_cpu(pids) - cpu0 if pids else 0.0)
    if not result.get("ok"):
        raise SystemExit(f"build failed: {result}")
    return wall, cpu, result


def digest_of(lake: Path) -> tuple[str, str]:
    from deltalake import DeltaTable

    meta = DeltaTable(str(lake / "tables" / "events")).history(1)[0]
    return meta["specd.data_digest"], meta["specd.rows_written"]


def stats(values: list[float]) -> str:
    return f"min {min(values):.3f} median {statistics.median(values):.3f} max {max(values):.3f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import os

    from distributed import LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--overhead-parts", type=int, default=64)
    args = parser.parse_args(argv)
    os.environ["BENCH_DASK_HASH_KEY"] = "bench-dask-hash-key"  # before the cluster: its workers inherit it
    work = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    figures: dict[str, Any] = {"same": []}
    try:
        make_input(work / "data" / "events", args.rows)
        many = args.overhead_parts
        make_input(work / "tiny" / "events", 100 * many, files=1, groups_per_file=many)
        started = time.perf_counter()
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
        start_s = time.perf_counter() - started
        try:
            pids = [w.process.pid for w in cluster.workers.values() if getattr(w, "process", None) is not None]
            dask = {"scheduler": cluster.scheduler_address, "partition_rows": max(1, args.rows // 32)}
            started = time.perf_counter()  # fresh workers import the pipeline's modules on their first tasks: not in the runs
            timed_build(job(work / "tiny", work / "lake-warm", "dask", {**dask, "partition_rows": 100}), [])
            figures["warm_up"] = time.perf_counter() - started
            walls: dict[str, list[float]] = {"duckdb": [], "dask": []}
            cpus: dict[str, list[float]] = {"duckdb": [], "dask": []}
            for run in range(args.runs):
                digests = {}
                for engine in ("duckdb", "dask"):
                    lake = work / f"lake-{engine}-{run}"
                    wall, cpu, result = timed_build(job(work / "data", lake, engine, dask), pids if engine == "dask" else [])
                    walls[engine].append(wall)
                    cpus[engine].append(cpu)
                    digests[engine] = digest_of(lake)
                    shutil.rmtree(lake, ignore_errors=True)
                figures["same"].append(digests["duckdb"] == digests["dask"])
                figures["rows_written"] = int(digests["dask"][1])
            overhead = []
            for run in range(args.runs):
                times = {}
                for parts in (1, many):
                    lake = work / f"lake-tiny-{parts}-{run}"
                    settings = {"scheduler": cluster.scheduler_address, "partition_rows": 100 if parts == many else 1_000_000}
                    times[parts] = timed_build(job(work / "tiny", lake, "dask", settings), [])[0]
                    shutil.rmtree(lake, ignore_errors=True)
                overhead.append((times[many] - times[1]) / (many - 1))
        finally:
            cluster.close()
        print(f"input: {args.rows:,} rows in 8 Parquet files, 32 partitions; {args.workers} Dask workers on 127.0.0.1")
        print(f"cluster start (scheduler: local adds this to a build): {start_s:.3f} s; first build on the fresh workers (their imports + {many} small partitions): {figures['warm_up']:.3f} s")
        for engine in ("duckdb", "dask"):
            print(f"{engine} wall s: {stats(walls[engine])}")
            print(f"{engine} cpu s: {stats(cpus[engine])}")
        ratios = {"wall": statistics.median(walls["dask"]) / statistics.median(walls["duckdb"]),
                  "cpu": statistics.median(cpus["dask"]) / statistics.median(cpus["duckdb"])}
        for what, value in ratios.items():
            print(f"ratio dask/duckdb {what} = {value:.2f}")
        print(f"per-partition overhead s ({many} vs 1 partitions of {100 * many:,} rows): {stats(overhead)}")
        print(f"same rows and digest in every run: {all(figures['same'])}")
        figures.update(ratios=ratios, overhead=overhead, cluster_start=start_s)
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
