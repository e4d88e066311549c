"""CI guards for plan scaling and the compose cache on realistic (preset-based) repositories.

Scaling: process CPU per 1,000 specs of a warm plan (compose with the daemon's cache → graph → check →
observe → plan) at 250 and at 1,000 specs must stay within 1.3× (best of 3, process CPU so that other
work on a shared machine does not fail it). 1,000 vs 4,000 as the issue asks takes ~20 s of CPU for the
cold compose of 4,000 alone, too slow for CI here; `bench_plan.py` measures 1k/5k/10k.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.bench.bench_plan import warm_plan_fn
from tests.bench.repo_gen import generate

pytestmark = [pytest.mark.bench]


def best_cpu(fn, repeat: int = 3) -> float:
    samples = []
    for _ in range(repeat):
        started = time.process_time()
        fn()
        samples.append(time.process_time() - started)
    return min(samples)


def test_warm_plan_cpu_per_spec_is_linear(tmp_path: Path):
    from daemon.core.compose_cache import ComposeCache

    per_1k = {}
    for size in (250, 1000):
        repo = generate(tmp_path / f"repo{size}", size)
        home = tmp_path / f"home{size}"
        home.mkdir()
        cache = ComposeCache()
        run = warm_plan_fn(repo, home, cache)
        result = run()  # cold: fills the cache
        assert sum(a.kind != "dashboard" for a in result.changes) == size
        cache.hits = cache.misses = 0
        per_1k[size] = best_cpu(run) / size * 1000
        assert cache.hit_rate() == 1.0
    ratio = per_1k[1000] / per_1k[250]
    print(f"warm plan CPU per 1,000 specs: 250: {per_1k[250] * 1000:.0f} ms, 1000: {per_1k[1000] * 1000:.0f} ms, ratio {ratio:.2f}")
    assert ratio <= 1.3, per_1k


def test_compose_cache_on_a_preset_repository(tmp_path: Path):
    from daemon.core.compose import compose
    from daemon.core.compose_cache import ComposeCache

    repo = generate(tmp_path / "repo", 200)
    cache = ComposeCache()
    first = compose(repo, "dev", cache=cache)
    total = cache.misses
    cache.hits = cache.misses = 0
    second = compose(repo, "dev", cache=cache)
    assert (cache.hits, cache.misses) == (total, 0)  # 100 % hits
    assert [d.data for d in second.docs] == [d.data for d in first.docs]

    users = [p for p in (repo / "specs").rglob("*.yaml") if "presets/table_silver" in p.read_text()]
    assert users
    preset = repo / "specs" / "presets" / "table_silver.yaml"
    preset.write_text(preset.read_text().replace("vacuum_hours: 168", "vacuum_hours: 170"))
    cache.hits = cache.misses = 0
    third = compose(repo, "dev", cache=cache)
    assert cache.misses == len(users) and cache.hits == total - len(users)  # exactly the files that use it
    silver = {d.name: d.data for d in third.docs if d.kind == "table" and d.data["layer"] == "silver"}
    assert silver and all(data["retention"]["vacuum_hours"] == 170 for data in silver.values())
