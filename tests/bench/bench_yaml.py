"""Benchmark: reading spec files, the fast YAML path (`safeyaml.load_data`) against the bounded parser.

Why: the cold `specd plan` parses every spec file; the bounded parser (`safeyaml.load`: events composed
in Python under the limits, with positions) cost twice the C parse. Measured on the texts of a realistic
generated repository (tests/bench/repo_gen.py: presets, `${env.…}`, tables/models/services) plus the
repository's own specs, process CPU, min/median/max over --repeat runs, all in the same run:
- bounded `load` (what every file cost before), and `load_data` (what compose calls now);
- baselines: PyYAML's unbounded C loader (`yaml.load(..., CSafeLoader)`: no limits, no duplicate keys)
  and libyaml's C composer alone (the floor of anything built on PyYAML's nodes);
- the share of files the fast path answered (the rest went to the bounded parser), and equality of the
  data with the bounded parser's on every file (exits non-zero otherwise).
Run: python tests/bench/bench_yaml.py [--specs 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.core import safeyaml
from tests.bench.repo_gen import MODEL_PRESET, ROOT, layout


def texts(specs: int) -> list[str]:
    own = [p.read_text() for p in sorted((ROOT / "specs").rglob("*.yaml"))]
    return list(layout(specs).values()) + own + [MODEL_PRESET]


def cpu(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.process_time()
        fn()
        samples.append(time.process_time() - started)
    return samples


def spread(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.1f} ms (min {min(samples) * 1000:.1f}, max {max(samples) * 1000:.1f})"


def _c_compose(text: str) -> object:
    loader = yaml.CSafeLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--specs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    corpus = texts(args.specs)
    fast = sum(safeyaml._fast(t) is not safeyaml._DECLINED for t in corpus)
    mismatches = sum(safeyaml.load_data(t) != safeyaml.load(t)[0] for t in corpus)
    def each(parse: Callable[[str], object]) -> Callable[[], None]:
        def run() -> None:
            for text in corpus:  # results dropped as compose drops nodes: no heap growth skews the collector
                parse(text)
        return run

    runs = {
        "bounded load (before)": cpu(each(safeyaml.load), args.repeat),
        "load_data (fast path)": cpu(each(safeyaml.load_data), args.repeat),
        "baseline yaml.load C": cpu(each(lambda t: yaml.load(t, Loader=yaml.CSafeLoader)), args.repeat),
        "baseline C compose only": cpu(each(_c_compose), args.repeat),
    }
    print(f"{len(corpus)} spec texts ({sum(map(len, corpus)) / 1024:.0f} KiB), process CPU over {args.repeat} runs:")
    for label, samples in runs.items():
        print(f"  {label + ':':26} {spread(samples)}")
    best = {label: min(samples) for label, samples in runs.items()}
    print(f"  ratio bounded/fast = {best['bounded load (before)'] / best['load_data (fast path)']:.2f}x, "
          f"fast/yaml.load C = {best['load_data (fast path)'] / best['baseline yaml.load C']:.2f}x, "
          f"fast/C compose = {best['load_data (fast path)'] / best['baseline C compose only']:.2f}x")
    print(f"  fast path answered {fast}/{len(corpus)} files; data different from the bounded parser's: {mismatches}")
    return {"files": len(corpus), "fast": fast, "mismatches": mismatches,
            "bounded_s": best["bounded load (before)"], "fast_s": best["load_data (fast path)"]}


if __name__ == "__main__":
    figures = main()
    sys.exit(1 if figures["mismatches"] else 0)
