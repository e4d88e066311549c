"""Benchmark: `specd plan` on a generated repo of N table specs (target: ≤ 1 s warm for 1,000).

Baselines measured in the same run: the floor (C YAML parse of the same files, nothing else) and
Hydra's `compose()` per file on a sample (the approach DESIGN.md measured at 60–90 ms per call).
Cold = a fresh `specd plan` process (interpreter start and imports included).
Run: python tests/bench/bench_plan.py [--size 1000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.repo_gen import generate


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hydra-sample", type=int, default=30)
    args = parser.parse_args(argv)

    from daemon.core.compose_cache import ComposeCache
    from daemon.runtime.reconcile import context_for, load_desired, make_adapters, observe, plan

    with tempfile.TemporaryDirectory() as tmp:
        repo = generate(Path(tmp) / "repo", args.size)
        home = Path(tmp) / "home"
        files = sorted((repo / "specs" / "tables").glob("*.yaml"))

        cache = ComposeCache()  # what the daemon keeps across cycles

        def warm_plan():
            desired = load_desired(repo, "dev", "bench", cache=cache)
            adapters = make_adapters(context_for(desired, home))
            return plan(desired, observe(adapters, desired.graph), adapters)

        result = warm_plan()
        assert sum(a.kind == "table" for a in result.changes) == args.size, len(result.changes)
        warm = timed(warm_plan, args.repeat)

        uncached = timed(lambda: plan(*_uncached(repo, home)), 1)

        home.mkdir(parents=True, exist_ok=True)  # the CLI keeps its compose cache under an existing home
        cli = [sys.executable, "-m", "daemon.cli", "plan", "--repo", str(repo), "--home", str(home), "--json"]
        started = time.perf_counter()
        cold_proc = subprocess.run(cli, capture_output=True, text=True)
        cold = time.perf_counter() - started
        assert cold_proc.returncode == 0, cold_proc.stderr
        started = time.perf_counter()
        subprocess.run(cli, capture_output=True, text=True, check=True)
        cold_cached = time.perf_counter() - started

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        floor = timed(lambda: [yaml.load(f.read_text(), Loader=loader) for f in files], args.repeat)

        hydra_per_file = _hydra_compose_per_file(repo, files[: args.hydra_sample])

    hydra_estimate = hydra_per_file * args.size
    print(f"plan of {args.size} table specs (all to create; with their derived dashboards: {len(result.actions)} actions)")
    print(f"  warm plan (daemon, cached documents): {warm * 1000:8.1f} ms   (target ≤ 1000 ms for 1,000 specs)")
    print(f"  in-process, no cache:                 {uncached * 1000:8.1f} ms")
    print(f"  cold `specd plan` (new process):      {cold * 1000:8.1f} ms")
    print(f"  `specd plan` again (disk cache):      {cold_cached * 1000:8.1f} ms")
    print(f"  baseline YAML parse only:             {floor * 1000:8.1f} ms   ratio warm/floor = {warm / floor:.1f}x")
    print(f"  baseline Hydra compose():             {hydra_per_file * 1000:8.1f} ms/file → {hydra_estimate:.1f} s for {args.size}   ratio hydra/warm = {hydra_estimate / warm:.1f}x")
    return {"warm_s": warm, "uncached_s": uncached, "cold_s": cold, "cold_cached_s": cold_cached, "floor_s": floor, "hydra_per_file_s": hydra_per_file}


def _uncached(repo: Path, home: Path):
    from daemon.runtime.reconcile import context_for, load_desired, make_adapters, observe

    desired = load_desired(repo, "dev", "bench")
    adapters = make_adapters(context_for(desired, home))
    return desired, observe(adapters, desired.graph), adapters


def _hydra_compose_per_file(repo: Path, sample: list[Path]) -> float:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(repo / "specs"), version_base="1.3"):
        compose(config_name=f"tables/{sample[0].stem}")  # first call pays one-off set-up
        started = time.perf_counter()
        for path in sample:
            compose(config_name=f"tables/{path.stem}")
        return (time.perf_counter() - started) / len(sample)


if __name__ == "__main__":
    main()
