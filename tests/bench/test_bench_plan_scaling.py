"""CI guards for plan scaling and the compose cache on realistic (preset-based) repositories.

Scaling: CPU per 1,000 specs of a warm plan (compose with the daemon's cache → graph → check → observe →
plan) at 250 and at 1,000 specs must stay within 1.3×. 1,000 vs 4,000 as the issue asks costs a cold
compose of 4,000 (~4 s of CPU here) and more per sample, too slow for CI here; `bench_plan.py` measures
1k/5k/10k.

How it is measured so that a loaded machine or an earlier test does not decide it (`cpu_per_1k`):
- this thread's CPU (`time.thread_time`), not the process's: earlier tests in the session can leave
  threads running (an in-process Prefect client's workers, dask, test servers) whose CPU `process_time`
  counted; the plan runs on this thread alone, which the test asserts (no thread starts while measured);
- each sample covers 1,000 specs at both sizes (4 plans of 250, 1 of 1,000): equally long windows see the
  same preemptions and cache pollution from other processes, where best-of-3 of 30 ms windows found a
  quiet one at 250 far more often than of 120 ms windows at 1,000;
- the heap is frozen (`gc.collect(); gc.freeze()`) and collected before every sample: a full collection
  otherwise walks every object the session holds (+30 ms on a 30 ms plan at 250, +85 ms on a 120 ms plan
  at 1,000 even when run alone), landing in whichever sample the allocation counters dictate; the plan's
  own garbage is still collected, and counted, in every sample;
- one untimed warm run first, then the minimum of 5 samples (noise only ever adds CPU).
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import pytest

from tests.bench.bench_plan import warm_plan_fn
from tests.bench.repo_gen import generate

pytestmark = [pytest.mark.bench]


def cpu_per_1k(fn, size: int, repeat: int = 5) -> float:
    """This thread's CPU seconds per 1,000 specs: the minimum over `repeat` samples of 1,000 specs each."""
    calls = max(1, round(1000 / size))
    fn()  # warm-up, untimed
    gc.collect()
    gc.freeze()  # the session's objects and the cache: out of the measured collections' way
    try:
        samples = []
        for _ in range(repeat):
            gc.collect()  # every sample starts with the same (empty) young generations
            started = time.thread_time()
            for _ in range(calls):
                fn()
            samples.append((time.thread_time() - started) / (calls * size) * 1000)
    finally:
        gc.unfreeze()
    return min(samples)


def test_warm_plan_cpu_per_spec_is_linear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from daemon.core.compose_cache import ComposeCache

    started: list[str] = []  # thread_time sees this thread only: the plan must start none
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda self: (started.append(self.name), start(self))[1])

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
        started.clear()
        per_1k[size] = cpu_per_1k(run, size)
        assert cache.hit_rate() == 1.0
        assert not started, started
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


# Runs `specd plan` as a new process and reports what it loaded: whether OmegaConf was imported (a miss
# composes with it) and how many models the compose cache file's `Deferred` entries unpickled, by class.
_PLAN_PROBE = """
import collections, json, sys
from daemon.core import deferred
loaded = collections.Counter()
load = deferred.Deferred.load
deferred.Deferred.load = lambda self: (lambda m: (loaded.update([type(m).__name__]), m)[1])(load(self))
from daemon.core import compose
reads = []
read_text = compose.read_text
compose.read_text = lambda path, *a, **k: (reads.append(str(path)) if "/specs/" in str(path) else None, read_text(path, *a, **k))[1]
from daemon.cli.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "omegaconf": "omegaconf" in sys.modules, "loaded": loaded, "reads": len(reads)}), file=sys.stderr)
"""


def test_second_cli_plan_prints_the_same_and_loads_no_dashboard_model(tmp_path: Path):
    """A second `specd plan` (the compose cache file of the first) prints byte for byte what the first
    printed, as text and as JSON, composes without OmegaConf (every file a hit) and unpickles no generated
    dashboard's model; a damaged cache file is only a slower run with the same output."""
    import json
    import subprocess
    import sys
    import time

    repo = generate(tmp_path / "repo", 100)
    generated = time.time()
    home = tmp_path / "home"
    home.mkdir()

    def plan(*flags: str) -> tuple[str, dict]:
        proc = subprocess.run([sys.executable, "-c", _PLAN_PROBE, "plan", "--repo", str(repo), "--home", str(home), *flags],
                              capture_output=True, text=True, check=True)
        return proc.stdout, json.loads(proc.stderr.strip().splitlines()[-1])

    cold_text, cold = plan()
    assert cold["omegaconf"] and "create" in cold_text
    time.sleep(max(0.0, generated + 1.1 - time.time()))  # the files are older than the stat index's margin
    warm_text, warm = plan()
    assert warm_text == cold_text and not warm["omegaconf"]
    assert warm["loaded"] == {}  # the generated dashboards' models stayed pickled
    warm_json, warm = plan("--format", "json")
    assert not warm["omegaconf"] and warm["loaded"] == {}
    assert warm["reads"] == 0  # every spec file known unchanged by its stat (daemon/core/statindex.py)
    cache_file = home / "cache" / "compose-dev.bin"
    from daemon.core.compose_cache import ComposeCache
    from daemon.core.deferred import Deferred

    memo = ComposeCache(cache_file).memos["derive:dashboard"]  # one per table, model and service, and the platform's
    assert len(memo) == 101 and all(type(value[0]) is Deferred for value in memo.values())
    cache_file.write_bytes(cache_file.read_bytes()[:-100])  # damaged: ignored and rewritten
    cold_json, cold = plan("--format", "json")
    assert cold["omegaconf"] and json.loads(cold_json) == json.loads(warm_json) and cold_json == warm_json
