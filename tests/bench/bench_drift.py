"""Benchmark: a drift check over a prediction log of 100 k rows × 20 features (target ≤ 10 s on 2 cores).

Measured, min/median/max over ≥ 3 runs, in the same process:
- `check`: specd's drift check with a cached reference profile — one DuckDB query that pulls the 20 features
  out of the logged JSON and samples the window, then the numpy statistics (PSI here, so the baseline below
  computes exactly the same numbers; Wasserstein is reported too);
- `profile`: building the reference profile (done once per model release, then cached);
- baseline `duckdb`: the same PSI statistics for all 20 features in one DuckDB pass (JSON extraction, binning
  against the reference deciles and the PSI sums all inside one query).

    .venv/bin/python -m tests.bench.bench_drift [--rows 100000] [--features 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from flows.monitoring.check import DriftSettings, check, current_sample, kinds_of, reference_profile
from flows.monitoring.stats import EPS


def make_data(base: Path, rows: int, features: int, seed: int = 0) -> tuple[str, str, list[str]]:
    """A reference Delta table and a prediction log (Delta, features as JSON); the odd features shifted."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from bentos.prediction_log import PREDICTION_COLUMNS, arrow_schema

    rng = np.random.default_rng(seed)
    names = [f"f{i:02d}" for i in range(features)]
    ref = {n: rng.normal(10.0 * i, 1.0 + i, rows) for i, n in enumerate(names)}
    ref["y"] = rng.integers(0, 2, rows)
    ref_uri = str(base / "reference")
    write_deltalake(ref_uri, pa.table(ref), mode="overwrite")
    cur = {n: rng.normal(10.0 * i + (0.5 * (1.0 + i) if i % 2 else 0.0), 1.0 + i, rows) for i, n in enumerate(names)}
    matrix = np.column_stack([cur[n] for n in names]).round(4).tolist()
    features_json = [json.dumps(dict(zip(names, row, strict=True))) for row in matrix]
    now = np.datetime64("2026-12-01T00:00:00", "us")
    log = {
        "request_id": [f"r{i}" for i in range(rows)], "row": np.zeros(rows, dtype=np.int64), "ts": now + np.arange(rows).astype("timedelta64[ms]"),
        "service": ["svc"] * rows, "variant": ["champion"] * rows, "model_tag": ["bench:a-0123456789abcdef"] * rows,
        "routing_fingerprint": ["fp"] * rows, "sticky_key": [None] * rows, "prediction": rng.integers(0, 2, rows).astype(str).tolist(),
        "probability": rng.random(rows), "latency_ms": rng.random(rows), "features": features_json,
    }
    table = pa.table({k: log[k] for k in PREDICTION_COLUMNS}).cast(arrow_schema(PREDICTION_COLUMNS))
    log_uri = str(base / "predictions")
    write_deltalake(log_uri, table, mode="overwrite")
    return ref_uri, log_uri, names


def duckdb_psi(log_uri: str, reference: dict[str, Any], names: list[str]) -> dict[str, float]:
    """The baseline: PSI of every feature over the reference deciles, in one DuckDB query over the log."""
    import duckdb
    from deltalake import DeltaTable

    con = duckdb.connect(config={"threads": "2"})
    con.register("predictions", DeltaTable(log_uri).to_pyarrow_dataset())
    parts, refs = [], []
    for n in names:
        values = np.asarray(reference["columns"][n]["sorted"])
        edges = np.unique(np.quantile(values, np.linspace(0, 1, 11))[1:-1])
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1) / values.size
        refs.append(f"SELECT '{n}' AS feature, * FROM (VALUES {', '.join(f'({b}, {float(c)!r})' for b, c in enumerate(counts))}) t(bin, ref)")
        # bin = number of edges ≤ value (numpy's searchsorted side=right), as plain vectorised arithmetic
        binned = " + ".join(f"(v.{n} >= {float(e)!r})::INTEGER" for e in edges)
        parts.append(f"SELECT '{n}' AS feature, {binned} AS bin, count(*) AS n FROM v GROUP BY 2")
    struct = json.dumps({n: "DOUBLE" for n in names})  # one JSON parse per row, as in specd's check
    extracts = ", ".join(f"s.{n} AS {n}" for n in names)
    sql = (f"WITH v AS (SELECT {extracts} FROM (SELECT from_json(features, '{struct}') AS s FROM predictions WHERE model_tag LIKE 'bench:%')), "
           f"cur AS ({' UNION ALL '.join(parts)}), ref AS ({' UNION ALL '.join(refs)}), "
           f"tot AS (SELECT feature, sum(n) AS total FROM cur GROUP BY 1) "
           f"SELECT ref.feature, sum((greatest(coalesce(cur.n, 0) / tot.total, {EPS}) - greatest(ref.ref, {EPS})) "
           f"* ln(greatest(coalesce(cur.n, 0) / tot.total, {EPS}) / greatest(ref.ref, {EPS}))) AS psi "
           f"FROM ref LEFT JOIN cur USING (feature, bin) JOIN tot USING (feature) GROUP BY 1")
    out = {feature: float(psi) for feature, psi in con.execute(sql).fetchall()}
    con.close()
    return out


def run_check(log_uri: str, reference: dict[str, Any], settings: DriftSettings) -> Any:
    from deltalake import DeltaTable

    sample = current_sample(DeltaTable(log_uri).to_pyarrow_dataset(), "bench", reference["features"], settings, kinds=kinds_of(reference))
    return check("bench", reference, sample, settings, {"table": "reference", "delta_version": 0})


def _stats(xs: list[float]) -> str:
    return f"min {min(xs):.3f} s  median {statistics.median(xs):.3f} s  max {max(xs):.3f} s"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ref_uri, log_uri, names = make_data(Path(tmp), args.rows, args.features)
        settings = DriftSettings(features=tuple(names), target="y", numeric="psi", last=args.rows, sample=args.rows, drift_share=0.3)
        timings: dict[str, list[float]] = {"profile": [], "check (psi, full window)": [], "check (wasserstein, full window)": [],
                                           "check (psi, 20k sample)": [], "duckdb one pass (psi)": []}
        reference: dict[str, Any] = {}
        for _ in range(args.runs):
            t = time.perf_counter()
            reference = reference_profile(ref_uri, None, settings)
            timings["profile"].append(time.perf_counter() - t)
            t = time.perf_counter()
            report = run_check(log_uri, reference, settings)
            timings["check (psi, full window)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            run_check(log_uri, reference, DriftSettings(**{**settings.__dict__, "numeric": "wasserstein", "numeric_threshold": 0.1}))
            timings["check (wasserstein, full window)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            run_check(log_uri, reference, DriftSettings(**{**settings.__dict__, "sample": 20_000}))
            timings["check (psi, 20k sample)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            baseline = duckdb_psi(log_uri, reference, names)
            timings["duckdb one pass (psi)"].append(time.perf_counter() - t)
        worst = max(abs(c.score - baseline[c.column]) for c in report.columns)
        print(f"drift check: {args.rows} logged rows × {args.features} features, {args.runs} runs")
        base = statistics.median(timings["duckdb one pass (psi)"])
        for name, xs in timings.items():
            print(f"  {name:<34} {_stats(xs)}  ratio to duckdb {statistics.median(xs) / base:.2f}×")
        print(f"  drifted {len(report.drifted())}/{len(report.columns)} features (share {report.share:.2f}); "
              f"max |psi(specd) − psi(duckdb)| = {worst:.2e}")
        return {"max_diff": worst, "drifted": sorted(c.column for c in report.drifted()), "columns": len(report.columns),
                "rows": report.current_rows, "medians": {k: statistics.median(v) for k, v in timings.items()}}


if __name__ == "__main__":
    main()
