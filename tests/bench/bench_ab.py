"""`specd ab` on a large prediction log: the full analysis against one plain DuckDB query over the same logs.

    python tests/bench/bench_ab.py [--size ROWS] [--repeat N]

Writes a realistic log to Delta (ROWS predictions over 14 days, two variants at 90/10, feedback for 40 %
of them, some corrected later), then times in fresh processes, each N times:

- baseline: one DuckDB query over the same Delta datasets that keeps the latest feedback per row, joins it
  and counts rows and hits per variant (what a person would write by hand for "accuracy per variant");
- specd ab: `bentos.ab_report` (open the logs, the one grouping-sets query with quantiles, time buckets,
  the latest-feedback rule, then every statistic) over the default 14-day window.

Prints min/median/max wall time and peak RSS of each and the ratio ab/baseline (target ≤ 1.5), so a
memory blow-up (rows pulled into Python) shows as clearly as a slow query.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
mode, predictions_uri, feedback_uri, since = sys.argv[1:5]
started = time.perf_counter()
if mode == "baseline":
    import duckdb
    from deltalake import DeltaTable
    p = DeltaTable(predictions_uri).to_pyarrow_dataset()
    f = DeltaTable(feedback_uri).to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("p", p); con.register("f", f)
    rows = con.execute("WITH latest AS (SELECT request_id, \"row\", arg_max(label, ts) AS label FROM f GROUP BY ALL) "
                       "SELECT p.variant, count(*), sum(CASE WHEN p.prediction = latest.label THEN 1 ELSE 0 END) "
                       "FROM p LEFT JOIN latest USING (request_id, \"row\") WHERE p.ts >= CAST(? AS TIMESTAMPTZ) GROUP BY p.variant",
                       [since]).fetchall()
    result = {{v: n for v, n, _ in rows}}
else:
    from bentos.ab_report import build_report, open_logs, query
    p, f = open_logs(predictions_uri, feedback_uri)
    totals, buckets = query(p, f, since=since, bucket="1 day", routing_fingerprint="fp")
    report = build_report("bench", totals, buckets, weights={{"champion": 0.9, "challenger": 0.1}},
                          current_counts={{r["variant"]: int(r["current_requests"]) for r in totals}})
    result = {{v.variant: v.rows for v in report.variants}}
elapsed = time.perf_counter() - started
print(json.dumps({{"s": elapsed, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rows": result}}))
"""


def write_logs(root: Path, size: int, days: int = 14) -> tuple[str, str, str]:
    """ROWS predictions (90/10 split, one row per request) over `days`, feedback for 40 %, 5 % of it corrected."""
    import numpy as np
    import pyarrow as pa
    from deltalake import write_deltalake

    from bentos.prediction_log import FEEDBACK_COLUMNS, PREDICTION_COLUMNS, arrow_schema

    rng = np.random.default_rng(11)
    end = np.datetime64("2026-11-30T00:00:00", "us")
    span_us = days * 86_400 * 1_000_000
    predictions_uri, feedback_uri = str(root / "predictions"), str(root / "feedback")
    chunk = 1_000_000
    for start in range(0, size, chunk):
        n = min(chunk, size - start)
        ids = np.char.add("r", np.arange(start, start + n).astype(str))
        ts = end - span_us + np.sort(rng.integers(0, span_us, n)).astype("timedelta64[us]")
        challenger = rng.random(n) < 0.1
        variant = np.where(challenger, "challenger", "champion")
        prediction = np.where(rng.random(n) < 0.5, "male", "female")
        table = pa.table({
            "request_id": ids, "row": np.zeros(n, dtype=np.int64), "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "service": np.full(n, "bench"), "variant": variant, "model_tag": np.where(challenger, "m:b", "m:a"),
            "routing_fingerprint": np.full(n, "fp"), "sticky_key": pa.nulls(n, pa.string()), "prediction": prediction,
            "probability": rng.random(n), "latency_ms": rng.gamma(2.0, 2.0, n), "features": np.full(n, "{}"),
        }, schema=arrow_schema(PREDICTION_COLUMNS))
        write_deltalake(predictions_uri, table, mode="append")
        scored = rng.random(n) < 0.4
        right = rng.random(n) < np.where(challenger, 0.82, 0.80)
        label = np.where(right, prediction, np.where(prediction == "male", "female", "male"))
        fb_ts = ts + np.timedelta64(30, "s")
        feedback = pa.table({
            "request_id": ids[scored], "row": np.zeros(int(scored.sum()), dtype=np.int64),
            "ts": pa.array(fb_ts[scored], pa.timestamp("us", tz="UTC")), "service": np.full(int(scored.sum()), "bench"),
            "variant": variant[scored], "label": label[scored],
        }, schema=arrow_schema(FEEDBACK_COLUMNS))
        write_deltalake(feedback_uri, feedback, mode="append")
        corrected = scored & (rng.random(n) < 0.05)  # a later correction: the latest label must win
        write_deltalake(feedback_uri, pa.table({
            "request_id": ids[corrected], "row": np.zeros(int(corrected.sum()), dtype=np.int64),
            "ts": pa.array(fb_ts[corrected] + np.timedelta64(3600, "s"), pa.timestamp("us", tz="UTC")),
            "service": np.full(int(corrected.sum()), "bench"), "variant": variant[corrected], "label": prediction[corrected],
        }, schema=arrow_schema(FEEDBACK_COLUMNS)), mode="append")
    since = str(end - span_us)  # the whole generated span is inside the default window
    return predictions_uri, feedback_uri, since.replace("T", " ") + "+00:00"


def run_child(mode: str, predictions_uri: str, feedback_uri: str, since: str) -> dict:
    code = _CHILD.format(repo=str(REPO))
    done = subprocess.run([sys.executable, "-c", code, mode, predictions_uri, feedback_uri, since],
                          capture_output=True, text=True, check=True, timeout=900)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        uris = write_logs(Path(tmp), args.size)
        print(f"wrote {args.size:,} predictions (+ feedback) in {time.perf_counter() - started:.1f}s")
        runs: dict[str, list[dict]] = {"baseline": [], "ab": []}
        for _ in range(args.repeat):
            for mode in runs:
                runs[mode].append(run_child(mode, *uris))
    for mode, results in runs.items():
        seconds = [r["s"] for r in results]
        rss = [r["rss_mb"] for r in results]
        print(f"{mode:<9} wall min/median/max {min(seconds):.2f}/{statistics.median(seconds):.2f}/{max(seconds):.2f} s   "
              f"peak RSS median {statistics.median(rss):.0f} MiB   rows per variant {results[-1]['rows']}")
    ratio = statistics.median(r["s"] for r in runs["ab"]) / statistics.median(r["s"] for r in runs["baseline"])
    rss_ratio = statistics.median(r["rss_mb"] for r in runs["ab"]) / statistics.median(r["rss_mb"] for r in runs["baseline"])
    print(f"ratio ab/baseline (wall, median) = {ratio:.2f}  (target <= 1.5)")
    print(f"ratio ab/baseline (peak RSS) = {rss_ratio:.2f}")
    same = runs["ab"][-1]["rows"] == runs["baseline"][-1]["rows"]
    print(f"same rows per variant as the baseline: {same}")
    return {"ratio": ratio, "rss_ratio": rss_ratio, "same_rows": float(same)}


if __name__ == "__main__":
    main()
