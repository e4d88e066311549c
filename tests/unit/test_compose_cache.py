"""The compose cache: hits for unchanged specs with presets, exact invalidation, a disk file that never crashes."""

from __future__ import annotations

import pytest

from daemon.core.compose import compose
from daemon.core.compose_cache import ComposeCache
from daemon.shared.errors import SpecErrors

SOURCE = "source:\n  type: file\n  path: data/orders.csv\n  format: csv\n"


def write_repo(repo, tables: int = 6) -> None:
    repo.write("specs/presets/bronze.yaml", "layer: bronze\nretention:\n  vacuum_hours: 168\n")
    repo.write("specs/presets/silver.yaml", "defaults: [presets/base, _self_]\nlayer: silver\n")
    repo.write("specs/presets/base.yaml", "maintenance:\n  compact: true\n")
    for i in range(tables):
        preset = "bronze" if i % 2 == 0 else "silver"
        repo.write(f"specs/tables/t{i}.yaml", f"defaults: [presets/{preset}, _self_]\ndescription: t{i} in ${{env.name}}\n" + SOURCE)
    repo.write("specs/tables/plain.yaml", "layer: other\n" + SOURCE)


def composed_docs(repo, cache, env="dev"):
    cache.hits = cache.misses = 0
    return {d.name: d.data for d in compose(repo.path, env, cache=cache).docs if d.kind == "table"}


def test_second_compose_of_a_preset_repository_hits_every_file(spec_repo):
    write_repo(spec_repo)
    cache = ComposeCache()
    first = composed_docs(spec_repo, cache)
    assert cache.hits == 0 and cache.misses == 8  # 7 spec files and the environment
    second = composed_docs(spec_repo, cache)
    assert (cache.hits, cache.misses) == (8, 0)
    assert second == first and first["t0"]["description"] == "t0 in dev"


def test_editing_a_preset_invalidates_exactly_the_files_that_use_it(spec_repo):
    write_repo(spec_repo)
    cache = ComposeCache()
    composed_docs(spec_repo, cache)
    spec_repo.write("specs/presets/base.yaml", "maintenance:\n  compact: false\n")  # used through silver
    docs = composed_docs(spec_repo, cache)
    assert (cache.hits, cache.misses) == (5, 3)  # t1, t3, t5 recomposed; t0, t2, t4, plain and the env hit
    assert docs["t1"]["maintenance"]["compact"] is False and docs["t0"]["maintenance"]["compact"] is True
    spec_repo.write("specs/presets/bronze.yaml", "layer: bronze\nretention:\n  vacuum_hours: 24\n")
    docs = composed_docs(spec_repo, cache)
    assert (cache.hits, cache.misses) == (5, 3) and docs["t2"]["retention"]["vacuum_hours"] == 24


def test_a_removed_preset_is_an_error_not_a_stale_hit(spec_repo):
    write_repo(spec_repo)
    cache = ComposeCache()
    composed_docs(spec_repo, cache)
    (spec_repo.path / "specs/presets/bronze.yaml").unlink()
    with pytest.raises(SpecErrors) as info:
        compose(spec_repo.path, "dev", cache=cache)
    assert "preset specs/presets/bronze.yaml not found" in str(info.value)


def test_the_environment_invalidates_only_files_that_interpolate(spec_repo):
    write_repo(spec_repo)
    cache = ComposeCache()
    composed_docs(spec_repo, cache, "dev")
    docs = composed_docs(spec_repo, cache, "staging")
    assert (cache.hits, cache.misses) == (1, 7)  # the staging overlay, and every file that reads ${env.…}
    assert docs["t0"]["description"] == "t0 in staging"


def test_oc_env_values_are_part_of_the_key(spec_repo, monkeypatch):
    monkeypatch.setenv("ORDERS_LAYER", "silver")
    spec_repo.write("specs/tables/orders.yaml", "layer: ${oc.env:ORDERS_LAYER,bronze}\n" + SOURCE)
    cache = ComposeCache()
    assert composed_docs(spec_repo, cache)["orders"]["layer"] == "silver"
    assert composed_docs(spec_repo, cache)["orders"]["layer"] == "silver" and cache.hits == 2
    monkeypatch.setenv("ORDERS_LAYER", "gold")
    assert composed_docs(spec_repo, cache)["orders"]["layer"] == "gold" and cache.misses == 1


def test_overrides_are_part_of_the_key(spec_repo):
    write_repo(spec_repo)
    cache = ComposeCache()
    composed_docs(spec_repo, cache)
    docs = {d.name: d.data for d in compose(spec_repo.path, "dev", ["tables.t0.retention.vacuum_hours=1"], cache).docs}
    assert docs["t0"]["retention"]["vacuum_hours"] == 1
    assert composed_docs(spec_repo, cache)["t0"]["retention"]["vacuum_hours"] == 168


def test_a_refused_credential_is_refused_again(spec_repo):
    spec_repo.write("specs/tables/orders.yaml", "description: x\nsource:\n  type: file\n  path: data/orders.csv\n"
                    "  format: csv\n  options:\n    password: hunter2hunter2\n")
    cache = ComposeCache()
    for _ in range(2):
        with pytest.raises(SpecErrors):
            compose(spec_repo.path, "dev", cache=cache)


def test_disk_cache_round_trip_and_damaged_files(spec_repo, tmp_path):
    write_repo(spec_repo)
    path = tmp_path / "cache" / "compose-dev.bin"
    cache = ComposeCache(path)
    expected = composed_docs(spec_repo, cache)
    cache.save()
    warm = ComposeCache(path)
    assert composed_docs(spec_repo, warm) == expected and warm.hit_rate() == 1.0
    blob = path.read_bytes()
    damaged = {
        "truncated": blob[: len(blob) // 2],
        "flipped": blob[:-10] + bytes([blob[-10] ^ 0xFF]) + blob[-9:],
        "garbage": b"\x80\x04not a cache",
        "empty": b"",
        "old pickle": __import__("pickle").dumps((1, {})),
    }
    for label, content in damaged.items():
        path.write_bytes(content)
        cache = ComposeCache(path)
        assert cache.entries == {}, label
        assert composed_docs(spec_repo, cache) == expected, label  # rebuilt, not crashed
        cache.save()
        assert ComposeCache(path).entries and ComposeCache(path).memos["derive:dashboard"], label  # and rewritten whole


def test_save_keeps_only_what_the_checkout_still_uses(spec_repo, tmp_path):
    write_repo(spec_repo)
    path = tmp_path / "compose-dev.bin"
    cache = ComposeCache(path)
    composed_docs(spec_repo, cache)
    cache.save()
    for i in range(3):
        spec_repo.write("specs/tables/t0.yaml", f"defaults: [presets/bronze, _self_]\ndescription: edit {i}\n" + SOURCE)
        cache = ComposeCache(path)
        composed_docs(spec_repo, cache)
        cache.save()
    assert len(ComposeCache(path).entries) == 8  # 7 files and the environment, not the 3 old versions of t0


def test_the_environment_is_cached_with_the_variables_it_reads(spec_repo, monkeypatch):
    write_repo(spec_repo)
    monkeypatch.setenv("SPECD_METRICS_PORT", "9500")
    cache = ComposeCache()
    assert compose(spec_repo.path, "dev", cache=cache).env.daemon.metrics_port == 9500
    cache.hits = cache.misses = 0
    assert compose(spec_repo.path, "dev", cache=cache).env.daemon.metrics_port == 9500
    assert cache.misses == 0
    monkeypatch.setenv("SPECD_METRICS_PORT", "9600")
    assert compose(spec_repo.path, "dev", cache=cache).env.daemon.metrics_port == 9600
    spec_repo.write("environments/base.yaml", (spec_repo.path / "environments/base.yaml").read_text().replace("poll_interval_s: 15", "poll_interval_s: 16"))
    spec_repo.write("environments/dev.yaml", "defaults: [base, _self_]\nname: dev\n")
    assert compose(spec_repo.path, "dev", cache=cache).env.daemon.poll_interval_s == 16


def test_a_warm_compose_from_the_disk_cache_needs_no_omegaconf(spec_repo, tmp_path):
    import subprocess
    import sys

    write_repo(spec_repo)
    script = (
        "import sys; from pathlib import Path; from daemon.core.compose import compose; "
        "from daemon.core.compose_cache import ComposeCache; "
        f"c = ComposeCache(Path({str(tmp_path / 'c.bin')!r})); compose(Path({str(spec_repo.path)!r}), 'dev', cache=c); c.save(); "
        "print('omegaconf' in sys.modules, c.hit_rate())"
    )
    outputs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split() for _ in range(2)]
    assert outputs[0][0] == "True"  # the first run composes with presets and interpolation
    assert outputs[1] == ["False", "1.0"]
