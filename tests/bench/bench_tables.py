"""Benchmark: ingest + clean + features over N synthetic rows into Delta, against plain Parquet writing.

    python tests/bench/bench_tables.py [--size 10000000]

For two input sizes (N/4 and N) a fresh process runs the real build pipeline (synthetic source →
DuckDB clean + features → staged Parquet → one Delta commit) and reports rows/s and its own peak RSS;
then, in the same process, `pyarrow.parquet.write_table` writes the very same output table (the
baseline: the cost of just writing those bytes). At N the pipeline runs once more with deduplication
(keys with ~1 % repeats, keep the latest by a timestamp with 5 % NULLs), and the dedupe SQL alone is
timed against the former `QUALIFY row_number() ... = 1` form over the same Arrow stream. Printed ratios:

- `ratio pipeline/write_table` = write_table time / pipeline time (target ≥ 0.5), per size;
- `ratio pipeline(wide)/write_table` and `ratio pipeline+dedupe/write_table`: the same two extra
  columns without and with deduplication; their difference is printed as seconds per million rows;
- `ratio dedupe qualify/window` = former dedupe time / current dedupe time (> 1: the current is faster);
- `ratio rss large/small` = peak RSS at N over peak RSS at N/4 (≈1 when memory is bounded by streaming;
  4 if it grew with the input). Deduplication needs every row at once: its RSS is bounded by DuckDB's
  memory limit (it spills), not by streaming, so it is reported but not part of this ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def spec(rows: int, dedupe: bool = False, wide: bool = False) -> dict:
    """The benchmark table. `wide`: with the two dedupe columns (key and order) but no dedupe, the
    like-for-like run that prices deduplication alone."""
    columns = [
        {"name": "event_id", "kind": "sequence"},
        {"name": "user_id", "kind": "int", "low": 1, "high": 100000},
        {"name": "country", "kind": "choice", "values": [" de", "FR ", "us", "Jp", "br"]},
        {"name": "amount", "kind": "normal", "mean": 40, "std": 25, "null_fraction": 0.01},
        {"name": "event_time", "kind": "timestamp", "start": "2024-01-01T00:00:00", "step_s": 0.01},
    ]
    clean: dict = {
        "where": "amount IS NOT NULL",
        "columns": {
            "country": {"normalize": {"trim": True, "case": "upper"}},
            "amount": {"clip": {"lower": 0, "upper": 500}},
        },
    }
    if dedupe or wide:
        columns += [
            {"name": "order_id", "kind": "int", "low": 0, "high": max(rows * 50, 1)},  # ~1 % repeated keys
            {"name": "updated_at", "kind": "timestamp", "start": "2024-01-01T00:00:00", "step_s": 0.001, "null_fraction": 0.05},
        ]
    if dedupe:
        clean["dedupe"] = {"keys": ["order_id"], "keep_latest_by": "updated_at"}
    return {
        "source": {"type": "synthetic", "rows": rows, "seed": 11, "batch_rows": 131072, "columns": columns},
        "clean": clean,
        "features": {
            "columns": {
                "amount_log": "ln(1 + amount)",
                "event_hour": "hour(event_time)",
                "big_spender": "amount > 100",
            },
        },
    }


def child(rows: int, work: Path, dedupe: bool, wide: bool = False) -> dict:
    """Run one pipeline build and its baseline in this process; return the figures."""
    import duckdb  # noqa: F401 - warm imports, as in the daemon's long-lived build workers
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    import flows.tables.clean
    import flows.tables.features  # noqa: F401
    from daemon.schema.table import TableSpec
    from flows.tables.build import BuildJob, run_build

    data = TableSpec.model_validate(spec(rows, dedupe, wide)).model_dump(mode="json", by_alias=True)
    job = BuildJob(name="bench", spec=data, fingerprint="bench", git_sha="bench", storage_root=str(work / "lake"),
                   data_root=str(work), repo_dir=str(work), state_dir=str(work / "state"))
    started, cpu = time.perf_counter(), _cpu_s()
    report = run_build(job)
    pipeline_s, pipeline_cpu_s = time.perf_counter() - started, _cpu_s() - cpu
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    output = DeltaTable(str(work / "lake" / "tables" / "bench")).to_pyarrow_table()
    started = time.perf_counter()
    pq.write_table(output, work / "baseline.parquet")
    baseline_s = time.perf_counter() - started
    return {"rows": rows, "written": report.rows["written"], "deduplicated": report.rows["deduplicated"],
            "pipeline_s": pipeline_s, "pipeline_cpu_s": pipeline_cpu_s, "baseline_s": baseline_s, "rss_mb": rss_mb}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def dedupe_alone(rows: int) -> dict:
    """The dedupe SQL alone over one Arrow stream: the former QUALIFY form vs the current window form."""
    import duckdb

    from flows.tables.clean import GROUP_ROWS, dedupe_sql
    from flows.tables.sources.synthetic import generate

    columns = spec(rows, dedupe=True)["source"]["columns"]
    former = 'SELECT * FROM src QUALIFY row_number() OVER (PARTITION BY "order_id" ORDER BY "updated_at" DESC NULLS LAST) = 1'
    current = dedupe_sql("src", ["order_id"], "updated_at", GROUP_ROWS)
    table = generate(rows, columns, seed=11).read_all()
    times = {}
    for name, sql in (("qualify", former), ("window", current), ("qualify", former), ("window", current)):
        connection = duckdb.connect()
        connection.execute("SET preserve_insertion_order = false")
        connection.register("src", table.to_reader(max_chunksize=131072))
        started = time.perf_counter()
        kept = sum(batch.num_rows for batch in connection.sql(sql).to_arrow_reader(131072))
        times[name] = min(times.get(name, float("inf")), time.perf_counter() - started)
        connection.close()
    return {"rows": rows, "kept": kept, "qualify_s": times["qualify"], "window_s": times["window"]}


def run_child(*args: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-tables-") as work:
        result = subprocess.run([sys.executable, __file__, "--child", *args, "--work", work],
                                capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--child", choices=["build", "build-wide", "build-dedupe", "dedupe-sql"])
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)
    if args.child:
        if args.child == "dedupe-sql":
            figures = dedupe_alone(args.size)
        else:
            figures = child(args.size, Path(args.work), args.child == "build-dedupe", args.child == "build-wide")
        print(json.dumps(figures))
        return {}
    small = run_child("build", "--size", str(max(args.size // 4, 1)))
    large = run_child("build", "--size", str(args.size))
    wide = run_child("build-wide", "--size", str(args.size))
    deduped = run_child("build-dedupe", "--size", str(args.size))
    alone = run_child("dedupe-sql", "--size", str(args.size))
    for figures, what in ((small, "pipeline"), (large, "pipeline"), (wide, "pipeline(wide)"), (deduped, "pipeline+dedupe")):
        rate = figures["rows"] / figures["pipeline_s"]
        ratio = figures["baseline_s"] / figures["pipeline_s"]
        print(f"tables bench {what} rows={figures['rows']:,} written={figures['written']:,} deduplicated={figures['deduplicated']:,} "
              f"time={figures['pipeline_s']:.2f}s ({rate:,.0f} rows/s, cpu {figures['pipeline_cpu_s']:.2f}s) write_table={figures['baseline_s']:.2f}s "
              f"peak_rss={figures['rss_mb']:.0f} MiB")
        print(f"ratio {what}/write_table = {ratio:.2f} (rows={figures['rows']:,}; target >= 0.5)")
    millions = args.size / 1e6
    per_million = (deduped["pipeline_s"] - wide["pipeline_s"]) / millions
    cpu_per_million = (deduped["pipeline_cpu_s"] - wide["pipeline_cpu_s"]) / millions
    print(f"dedupe adds {per_million:.2f} s ({cpu_per_million:.2f} s cpu) per million rows to the same-columns pipeline (rows={args.size:,})")
    speedup = alone["qualify_s"] / alone["window_s"]
    print(f"dedupe sql alone rows={alone['rows']:,} kept={alone['kept']:,}: qualify={alone['qualify_s']:.2f}s window={alone['window_s']:.2f}s")
    print(f"ratio dedupe qualify/window = {speedup:.2f} (> 1: the window form is faster)")
    growth = large["rss_mb"] / small["rss_mb"]
    print(f"ratio rss large/small = {growth:.2f} (input x{large['rows'] / small['rows']:.0f}; 1.0 = bounded by streaming)")
    return {"small": small, "large": large, "wide": wide, "dedupe": deduped, "dedupe_sql": alone,
            "ratio": large["baseline_s"] / large["pipeline_s"], "dedupe_ratio": deduped["baseline_s"] / deduped["pipeline_s"],
            "dedupe_speedup": speedup, "rss_growth": growth}


if __name__ == "__main__":
    main()
