"""Benchmark: what a `specd-drift-check` Prefect flow run costs a due drift check, and a check that is not due.

Measured in one process, min/median/max over --runs, on the penguin table and a --rows prediction log:
- baseline `inline`: a due check run inline (`ctx.run_monitor` None: `specd plan`, `--no-prefect`);
- `flow run`: the same due check through `run_monitor_in_prefect` (one async flow run, tags, the markdown
  artifact), as the daemon runs it; the Prefect overhead per check is the median difference;
- `not due`: observe with the seam set and a fresh cached verdict: reads `last.json`, creates no run
  (checked against Prefect's REST API).
Wall time; CPU is this process's (the Prefect server is another process). One warm-up of each first.
A Prefect API: PREFECT_API_URL, or a local server started for the run.

    .venv/bin/python -m tests.bench.bench_drift_flow [--runs 5] [--rows 2000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any


def spread(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:8.1f} ms (min {min(samples) * 1000:.1f}, max {max(samples) * 1000:.1f})"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args(argv)

    from daemon.adapters.models.drift import observe_drift
    from daemon.runtime.prefect_monitor import run_monitor_in_prefect
    from tests.bench.prefect_env import prefect_api
    from tests.helpers.drift_runs import NAME, check_runs, monitored, write_log

    with tempfile.TemporaryDirectory() as tmp, prefect_api() as api:
        m = monitored(Path(tmp) / "home", run_monitor_in_prefect)
        write_log(m.ctx.home, m.release.champion, shift_mm=6.0, rows=args.rows)
        inline_ctx = replace(m.ctx, run_monitor=None)
        timings: dict[str, list[float]] = {"inline": [], "flow run": [], "not due": []}
        cpu: dict[str, list[float]] = {"inline": [], "flow run": []}
        due = [time.time()]

        def once(label: str, ctx: Any, *, force: bool = True) -> Any:
            due[0] += 3601 if force else 0  # past the interval: due
            wall, proc = time.perf_counter(), time.process_time()
            report = observe_drift(ctx, NAME, m.resource.spec, m.release, now=due[0] if force else None)
            elapsed = time.perf_counter() - wall
            if label in cpu:
                cpu[label].append(time.process_time() - proc)
            timings[label].append(elapsed)
            return report

        once("inline", inline_ctx)
        once("flow run", m.ctx)  # warm-up: the Prefect client, the flow registration
        for values in (*timings.values(), *cpu.values()):
            values.clear()
        for _ in range(args.runs):
            inline = once("inline", inline_ctx)
            flowed = once("flow run", m.ctx)
        runs_before = len(check_runs(api, m.ctx.revision))
        for _ in range(args.runs):
            once("not due", m.ctx, force=False)
        runs_after = len(check_runs(api, m.ctx.revision))

    base = statistics.median(timings["inline"])
    print(f"drift check as a Prefect flow run: {inline.current_rows} window rows × {len(inline.columns)} features, {args.runs} runs")
    for label, samples in timings.items():
        print(f"  {label:9s} {spread(samples)}   ratio to inline {statistics.median(samples) / base:6.2f}")
    overhead = statistics.median(timings["flow run"]) - base
    print(f"  Prefect overhead per due check (median flow run − inline) = {overhead:.3f} s; "
          f"CPU here: inline {statistics.median(cpu['inline']):.3f} s, flow run {statistics.median(cpu['flow run']):.3f} s")
    print(f"  runs created by {args.runs} not-due checks: {runs_after - runs_before}; flow runs in all: {runs_after}")
    return {"share_inline": inline.share, "share_flow": flowed.share, "drifted": [c.column for c in flowed.drifted()],
            "runs": runs_after, "not_due_runs": runs_after - runs_before, "overhead_s": overhead,
            "medians": {k: statistics.median(v) for k, v in timings.items()}}


if __name__ == "__main__":
    main()
