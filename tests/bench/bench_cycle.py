"""Benchmark: the cost of one reconcile cycle's bookkeeping, and of the durable atomic write.

- `run_cycle` on an in-memory adapter (N tables in waves, already converged: the daemon's idle cycle)
  against its floor, `make_plan` alone over the same observations (the pure diff).
- A first cycle that applies all N (no Prefect, instant actions): executor + journal + statuses per action.
- `atomic_write_json` (temp + fsync + rename + directory fsync) against `durable=False` and a plain
  `Path.write_text` (the floor): what crash safety costs per small state file.

Prints min/median/max over `--repeat` runs and ratios against the baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from daemon.core.documents import Composed
from daemon.core.graph import Graph, Resource
from daemon.core.plan import make_plan
from daemon.core.state import HEALTHY, ApplyOutcome, Observed
from daemon.runtime.cycle import CycleState, run_cycle
from daemon.runtime.journal import Journal
from daemon.runtime.reconcile import Desired
from daemon.schema.environment import EnvironmentSpec
from daemon.shared.fsio import atomic_write_json


class MemoryTables:
    kind = "table"

    def __init__(self) -> None:
        self.live: dict[str, str] = {}

    def observe(self, resources):
        return {r.key: Observed(True, self.live[r.name], "r", HEALTHY, "live") if r.name in self.live else Observed(False) for r in resources}

    def apply(self, action, resource):
        self.live[action.name] = action.fingerprint
        return ApplyOutcome("built")

    def describe(self, action, resource, live=None):
        return "build"


def graph_of(size: int) -> Graph:
    resources = []
    for i in range(size):
        deps = (f"table/t{i - 1}",) if i % 10 else ()
        resources.append(Resource(f"table/t{i}", "table", f"t{i}", f"specs/tables/t{i}.yaml", None, {}, deps, f"fp{i}", i % 10))
    return Graph(tuple(resources))


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def line(name: str, samples: list[float]) -> str:
    return f"{name:<34} min {min(samples) * 1000:9.2f} ms  median {statistics.median(samples) * 1000:9.2f} ms  max {max(samples) * 1000:9.2f} ms"


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=500, help="tables in the graph")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--writes", type=int, default=200, help="state files written per sample")
    args = parser.parse_args(argv)
    repeat = max(3, args.repeat)
    env = EnvironmentSpec(name="bench")
    graph = graph_of(args.size)
    desired = Desired("b" * 40, Path("."), Composed(env, ()), graph)
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        adapter, state = MemoryTables(), CycleState()
        journal = Journal(root / "events.jsonl")
        first = timed(lambda: run_cycle(desired, {"table": adapter}, state, journal, use_prefect=False), 1)
        applied = len(adapter.live)
        observed = adapter.observe(graph.resources)
        floor = timed(lambda: make_plan(desired.revision, "bench", graph, observed), repeat)
        idle = timed(lambda: run_cycle(desired, {"table": adapter}, state, journal, use_prefect=False), repeat)
        plain = timed(lambda: [(root / f"p{i}.json").write_text('{"pid": 1}') for i in range(args.writes)], repeat)
        fast = timed(lambda: [atomic_write_json(root / f"f{i}.json", {"pid": 1}, durable=False) for i in range(args.writes)], repeat)
        durable = timed(lambda: [atomic_write_json(root / f"d{i}.json", {"pid": 1}) for i in range(args.writes)], repeat)
    print(f"bench_cycle: {args.size} tables, {repeat} runs, {args.writes} writes per run")
    print(line("make_plan (floor)", floor))
    print(line("run_cycle, idle (converged)", idle))
    print(line(f"run_cycle, first ({applied} applies)", first))
    print(line("write_text (floor)", plain))
    print(line("atomic_write_json durable=False", fast))
    print(line("atomic_write_json durable", durable))
    figures = {
        "floor_s": statistics.median(floor), "idle_s": statistics.median(idle), "first_s": first[0], "applied": float(applied),
        "plain_s": statistics.median(plain), "fast_s": statistics.median(fast), "durable_s": statistics.median(durable),
    }
    print(f"ratio idle/floor = {figures['idle_s'] / figures['floor_s']:.1f}")
    print(f"per applied action = {figures['first_s'] / max(1, applied) * 1000:.3f} ms")
    print(f"ratio atomic/plain = {figures['fast_s'] / figures['plain_s']:.1f}, ratio durable/plain = {figures['durable_s'] / figures['plain_s']:.1f}")
    return figures


if __name__ == "__main__":
    main()
