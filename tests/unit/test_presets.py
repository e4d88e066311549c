"""The plain-dict defaults merge and `${env.…}` resolution give exactly what OmegaConf gives, or defer to it."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from daemon.core import compose as compose_module
from daemon.core.compose import compose
from daemon.core.presets import merge_layers, resolve
from daemon.shared.errors import SpecErrors

ROOT = Path(__file__).resolve().parents[2]
ENV = {"name": "dev", "storage": {"root": "lake", "data_root": "."}, "daemon": {"poll_interval_s": 5}, "tags": ["a", "b"]}
STRINGS = ["x", "", "1", "${env.name}", "lake at ${env.storage.root}", "${env.daemon.poll_interval_s}", "${env.storage}",
           "p${env.daemon.poll_interval_s}s", "${secret:TOKEN}", "k=${secret:TOKEN}", "${env.tags}", "a {b}"]


def omegaconf_result(layers: list[dict], env: dict) -> dict:
    from daemon.core.compose import _register_resolvers

    _register_resolvers()
    merged = OmegaConf.merge(*[OmegaConf.create(layer) for layer in layers])
    root = OmegaConf.create({"env": env})
    root["spec"] = merged
    return OmegaConf.to_container(root["spec"], resolve=True)


def random_value(rng: random.Random, depth: int):
    roll = rng.random()
    if depth < 3 and roll < 0.3:
        return random_mapping(rng, depth + 1)
    if depth < 3 and roll < 0.4:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return rng.choice([rng.randrange(-5, 5), rng.random(), True, False, None, *STRINGS])


def random_mapping(rng: random.Random, depth: int = 0) -> dict:
    return {rng.choice("abcdef"): random_value(rng, depth) for _ in range(rng.randrange(1, 5))}


def test_random_layer_stacks_match_omegaconf():
    rng = random.Random(1234)
    handled = 0
    for _ in range(600):
        layers = [random_mapping(rng) for _ in range(rng.randrange(1, 4))]
        merged = merge_layers(layers)
        plain = resolve(merged, ENV) if merged is not None else None
        if plain is None:
            continue
        handled += 1
        expected = omegaconf_result(layers, ENV)
        assert plain == expected, layers
        assert list(plain) == list(expected)  # key order too: it is what users see in plans
    assert handled > 300  # the plain path is the common case, not the exception


def test_plain_merge_never_mutates_its_layers():
    preset = {"retention": {"vacuum_hours": 168}, "tags": ["x"]}
    own = {"retention": {"vacuum_hours": 48}}
    merged = merge_layers([preset, own])
    merged["retention"]["vacuum_hours"] = 1
    merged["tags"].append("y")
    assert preset == {"retention": {"vacuum_hours": 168}, "tags": ["x"]}


@pytest.mark.parametrize("layers", [
    [{"a": {"b": 1}}, {"a": 1}],  # a mapping replaced by a scalar
    [{"a": [1]}, {"a": {"b": 1}}],  # a list replaced by a mapping (OmegaConf refuses)
    [{"a": 1}, {"a": "???"}],  # a missing value never overrides
    [{"a": __import__("datetime").date(2024, 1, 1)}],  # YAML-typed values
    [{1: "int key"}],
])
def test_what_omegaconf_decides_is_left_to_omegaconf(layers):
    assert merge_layers(layers) is None


@pytest.mark.parametrize("text", [
    "${oc.env:HOME,x}", "${source.path}", "${.x}", "\\${env.name}", "${env.${env.name}}", "${env.missing}",
    "ratio ${env.ratio}", "${secret:true}", "{{legend}} ${env.name}",
])
def test_interpolations_beyond_env_and_secret_are_left_to_omegaconf(text):
    assert resolve({"v": text}, {**ENV, "ratio": 0.5}) is None


def _compose_both(repo: Path, env: str = "dev", monkeypatch=None):
    fast = compose(repo, env)
    monkeypatch.setattr(compose_module, "PLAIN_MERGE", False)
    slow = compose(repo, env)
    monkeypatch.setattr(compose_module, "PLAIN_MERGE", True)
    return fast, slow


def _docs(composed):
    return {(d.kind, d.name): d.data for d in composed.docs}


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_example_repository_composes_identically(tmp_path, monkeypatch, env):
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    fast, slow = _compose_both(tmp_path, env, monkeypatch)
    assert _docs(fast) == _docs(slow)
    assert [d.name for d in fast.docs] == [d.name for d in slow.docs]


def test_generated_realistic_repository_composes_identically(tmp_path, monkeypatch):
    from tests.bench.repo_gen import generate

    repo = generate(tmp_path / "repo", 120)
    fast, slow = _compose_both(repo, "dev", monkeypatch)
    assert _docs(fast) == _docs(slow)
    assert sum(d.kind == "model" for d in fast.docs) >= 6 and sum(d.kind == "service" for d in fast.docs) >= 6


def test_a_missing_environment_key_reports_what_omegaconf_reports(spec_repo, monkeypatch):
    spec_repo.write("specs/presets/p.yaml", "layer: silver\n")
    spec_repo.write("specs/tables/orders.yaml", "defaults: [presets/p, _self_]\ndescription: ${env.nope}\n"
                    "source:\n  type: file\n  path: data/orders.csv\n  format: csv\n")
    with pytest.raises(SpecErrors) as fast:
        compose(spec_repo.path, "dev")
    monkeypatch.setattr(compose_module, "PLAIN_MERGE", False)
    with pytest.raises(SpecErrors) as slow:
        compose(spec_repo.path, "dev")
    assert [str(i) for i in fast.value.issues] == [str(i) for i in slow.value.issues]
    assert "specs/tables/orders.yaml:2: description: interpolation" in str(fast.value.issues[0])
