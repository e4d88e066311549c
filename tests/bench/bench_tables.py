"""Benchmark: ingest + clean + features over N synthetic rows into Delta, against plain Parquet writing.

    python tests/bench/bench_tables.py [--size 10000000]

For two input sizes (N/4 and N) a fresh process runs the real build pipeline (synthetic source →
DuckDB clean + features → staged Parquet → one Delta commit) and reports rows/s and its own peak RSS;
then, in the same process, `pyarrow.parquet.write_table` writes the very same output table (the
baseline: the cost of just writing those bytes). Printed ratios:

- `ratio pipeline/write_table` = write_table time / pipeline time (target ≥ 0.5),
- `ratio rss large/small` = peak RSS at N over peak RSS at N/4 (≈1 when memory is bounded by streaming;
  4 if it grew with the input).
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


def spec(rows: int) -> dict:
    return {
        "source": {
            "type": "synthetic", "rows": rows, "seed": 11, "batch_rows": 131072,
            "columns": [
                {"name": "event_id", "kind": "sequence"},
                {"name": "user_id", "kind": "int", "low": 1, "high": 100000},
                {"name": "country", "kind": "choice", "values": [" de", "FR ", "us", "Jp", "br"]},
                {"name": "amount", "kind": "normal", "mean": 40, "std": 25, "null_fraction": 0.01},
                {"name": "event_time", "kind": "timestamp", "start": "2024-01-01T00:00:00", "step_s": 0.01},
            ],
        },
        "clean": {
            "where": "amount IS NOT NULL",
            "columns": {
                "country": {"normalize": {"trim": True, "case": "upper"}},
                "amount": {"clip": {"lower": 0, "upper": 500}},
            },
        },
        "features": {
            "columns": {
                "amount_log": "ln(1 + amount)",
                "event_hour": "hour(event_time)",
                "big_spender": "amount > 100",
            },
        },
    }


def child(rows: int, work: Path) -> dict:
    """Run one pipeline build and its baseline in this process; return the figures."""
    import duckdb  # noqa: F401 - warm imports, as in the daemon's long-lived build workers
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    import flows.tables.clean
    import flows.tables.features  # noqa: F401
    from daemon.spec.table import TableSpec
    from flows.tables.build import BuildJob, run_build

    data = TableSpec.model_validate(spec(rows)).model_dump(mode="json", by_alias=True)
    job = BuildJob(name="bench", spec=data, fingerprint="bench", git_sha="bench", storage_root=str(work / "lake"),
                   data_root=str(work), repo_dir=str(work), state_dir=str(work / "state"))
    started = time.perf_counter()
    report = run_build(job)
    pipeline_s = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    output = DeltaTable(str(work / "lake" / "tables" / "bench")).to_pyarrow_table()
    started = time.perf_counter()
    pq.write_table(output, work / "baseline.parquet")
    baseline_s = time.perf_counter() - started
    return {"rows": rows, "written": report.rows["written"], "pipeline_s": pipeline_s, "baseline_s": baseline_s, "rss_mb": rss_mb}


def run_size(rows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-tables-") as work:
        result = subprocess.run([sys.executable, __file__, "--child", "--size", str(rows), "--work", work],
                                capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.size, Path(args.work))))
        return {}
    small, large = run_size(max(args.size // 4, 1)), run_size(args.size)
    for figures in (small, large):
        rate = figures["rows"] / figures["pipeline_s"]
        ratio = figures["baseline_s"] / figures["pipeline_s"]
        print(f"tables bench rows={figures['rows']:,} written={figures['written']:,} pipeline={figures['pipeline_s']:.2f}s "
              f"({rate:,.0f} rows/s) write_table={figures['baseline_s']:.2f}s peak_rss={figures['rss_mb']:.0f} MiB")
        print(f"ratio pipeline/write_table = {ratio:.2f} (rows={figures['rows']:,}; target >= 0.5)")
    growth = large["rss_mb"] / small["rss_mb"]
    print(f"ratio rss large/small = {growth:.2f} (input x{large['rows'] / small['rows']:.0f}; 1.0 = bounded by streaming)")
    return {"small": small, "large": large, "ratio": large["baseline_s"] / large["pipeline_s"], "rss_growth": growth}


if __name__ == "__main__":
    main()
