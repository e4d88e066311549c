"""Benchmark: `specd plan` over realistic generated repositories (presets, `${env.…}`, mixed kinds).

Targets (issue 14): warm plan (a daemon cycle on a new commit, and a second `specd plan`) of 1,000 specs
≤ 0.5 s, of 10,000 ≤ 5 s, linear in N; a cold `specd plan` of 1,000 ≤ 1.5 s.

Measured per size (1k/5k/10k by default), min/median/max over --repeat runs:
- warm plan in-process as the daemon does it (compose with its cache → graph → check → observe →
  plan), wall time and process CPU, CPU per 1,000 specs, and the ratio 10k/1k of CPU per spec;
- the baseline in the same run: a bare C YAML parse of the same files (ratio warm/parse);
- the compose cache hit rate of the warm runs.
At the first size: a cold `specd plan` (new process, no cache file) and a second one (disk cache),
against two baselines: a bare interpreter start (`python -c pass`) and the import of the CLI alone
(`python -c "import daemon.cli.main"`, what any command pays before reading a spec). The children run
with bytecode caching on (into a temporary PYTHONPYCACHEPREFIX, warmed by one run first), as a user's
install has it, even when this shell sets PYTHONDONTWRITEBYTECODE.
Run: python tests/bench/bench_plan.py [--sizes 1000,5000,10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.repo_gen import generate


def measure(fn: Callable[[], object], repeat: int) -> tuple[list[float], list[float]]:
    """(wall seconds, process CPU seconds) of each run."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return walls, cpus


def spread(samples: list[float], scale: float = 1000.0, unit: str = "ms") -> str:
    low, mid, high = min(samples) * scale, statistics.median(samples) * scale, max(samples) * scale
    return f"{mid:8.1f} {unit} (min {low:.1f}, max {high:.1f})"


def warm_plan_fn(repo: Path, home: Path, cache) -> Callable[[], object]:
    from daemon.runtime.reconcile import check, context_for, load_desired, make_adapters, observe, plan

    def run():
        desired = load_desired(repo, "dev", "bench", cache=cache)
        adapters = make_adapters(context_for(desired, home))
        check(adapters, desired.graph)
        return plan(desired, observe(adapters, desired.graph), adapters)

    return run


def spec_files(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "specs").rglob("*.yaml"))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cli-repeat", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    from daemon.core.compose_cache import ComposeCache

    figures: dict[str, float] = {}
    per_1k: dict[int, float] = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            repo = generate(Path(tmp) / f"repo{size}", size)
            home = Path(tmp) / f"home{size}"
            home.mkdir()
            files = spec_files(repo)
            cache = ComposeCache()  # what the daemon keeps across cycles
            run = warm_plan_fn(repo, home, cache)
            cold_wall, cold_cpu = measure(run, 1)  # in-process, empty cache: composes everything
            result = run()
            kinds = {}
            for action in result.changes:
                kinds[action.kind] = kinds.get(action.kind, 0) + 1
            assert sum(n for k, n in kinds.items() if k != "dashboard") == size, kinds
            cache.hits = cache.misses = 0
            walls, cpus = measure(run, args.repeat)
            hit_rate = cache.hit_rate()
            _, parse_cpus = measure(lambda files=files: [yaml.load(f.read_text(), Loader=loader) for f in files], args.repeat)
            per_1k[size] = min(cpus) / size * 1000
            print(f"plan of {size} specs ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))} to create)")
            print(f"  warm plan, wall (daemon cycle):      {spread(walls)}")
            print(f"  warm plan, process CPU:              {spread(cpus)}   = {per_1k[size] * 1000:.1f} ms CPU per 1,000 specs (best)")
            print(f"  first plan in-process (empty cache): wall {spread(cold_wall)}; CPU {spread(cold_cpu)}")
            print(f"  compose cache hit rate (warm runs):  {hit_rate * 100:8.1f} %")
            print(f"  baseline YAML parse only, CPU:       {spread(parse_cpus)}   ratio warm/parse = {min(cpus) / min(parse_cpus):.1f}x")
            figures[f"warm_{size}_s"] = statistics.median(walls)
            figures[f"warm_cpu_{size}_s"] = min(cpus)
            figures[f"parse_cpu_{size}_s"] = min(parse_cpus)
            figures[f"hit_rate_{size}"] = hit_rate
            if size == sizes[0]:
                figures.update(_cli(repo, home, args.cli_repeat))
            shutil.rmtree(repo)
    if len(sizes) > 1:
        first, last = sizes[0], sizes[-1]
        ratio = per_1k[last] / per_1k[first]
        print(f"scaling: CPU per spec at {last} / at {first} = {ratio:.2f}x  ("
              + ", ".join(f"{s}: {per_1k[s] * 1000:.1f} ms/1k" for s in sizes) + ")")
        figures["scaling_ratio"] = ratio
    return figures


def _cli(repo: Path, home: Path, repeat: int) -> dict[str, float]:
    """Cold (no cache file) and second `specd plan` runs as a user starts them, vs a bare interpreter."""
    cli = [sys.executable, "-m", "daemon.cli", "plan", "--repo", str(repo), "--home", str(home)]  # the text a PR sees
    cache_dir = home / "cache"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(home.parent / "pycache")
    _child(cli, ([], []), env)  # compiles the bytecode once, like the first run after an install
    colds, seconds, bare, imports = ([], []), ([], []), ([], []), ([], [])
    for _ in range(repeat):
        shutil.rmtree(cache_dir, ignore_errors=True)
        _child(cli, colds, env)
        _child(cli, seconds, env)
        _child([sys.executable, "-c", "pass"], bare, env)
        _child([sys.executable, "-c", "import daemon.cli.main"], imports, env)
    for label, (walls, cpus) in (("cold `specd plan` (new process, no cache)", colds), ("second `specd plan` (disk cache)", seconds),
                                 ("baseline bare interpreter start", bare), ("baseline import of the CLI only", imports)):
        print(f"  {label + ':':44} wall {spread(walls)}; CPU {spread(cpus)}")
    print(f"  ratio second/bare (CPU) = {min(seconds[1]) / min(bare[1]):.1f}x, cold/bare (CPU) = {min(colds[1]) / min(bare[1]):.1f}x")
    print(f"  ratio second/import (CPU) = {min(seconds[1]) / min(imports[1]):.1f}x, cold/import (CPU) = {min(colds[1]) / min(imports[1]):.1f}x"
          f"   (targets: second ≤ 0.5 s, cold ≤ 1.5 s)")
    return {"cli_cold_s": statistics.median(colds[0]), "cli_second_s": statistics.median(seconds[0]),
            "cli_cold_cpu_s": min(colds[1]), "cli_second_cpu_s": min(seconds[1]), "bare_python_cpu_s": min(bare[1]),
            "import_cli_cpu_s": min(imports[1])}


def _child(command: list[str], into: tuple[list[float], list[float]], env: dict[str, str] | None = None) -> None:
    """Run a process; append its wall time and its own CPU (user + system, from the kernel)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    into[0].append(time.perf_counter() - started)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    into[1].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, proc.stderr


if __name__ == "__main__":
    main()
