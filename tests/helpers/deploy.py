"""Helpers for the deploy-target tests: the example stack in a temp git repo, manifests applied through the
real `manifests` adapter, and golden files (regenerate with SPECD_UPDATE_GOLDEN=1, then review the diff)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import yaml

from daemon.adapters.manifests import ManifestsAdapter
from daemon.runtime.reconcile import context_for, load_desired, observe, plan
from tests.conftest import ROOT, SpecRepo

GOLDEN = ROOT / "tests" / "golden"
SERVICE_SPEC = "specs/services/penguin_api.yaml"
SHA = re.compile(r"\b[0-9a-f]{40}(-dirty)?\b")


def golden(rel: str, text: str) -> None:
    """Compare `text` with tests/golden/<rel> (SPECD_UPDATE_GOLDEN=1 rewrites it)."""
    path = GOLDEN / rel
    if os.environ.get("SPECD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"missing golden file {path}: run with SPECD_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{rel} differs from its golden file (SPECD_UPDATE_GOLDEN=1 regenerates it)"


def example_repo(path: Path) -> SpecRepo:
    """The project's environments/ and specs/ committed on main of a fresh repository."""
    path.mkdir(parents=True)
    repo = SpecRepo(path)
    repo.git("init", "-q", "-b", "main")
    shutil.copytree(ROOT / "environments", path / "environments")
    shutil.copytree(ROOT / "specs", path / "specs")
    repo.commit("the example stack")
    return repo


def set_weights(repo: SpecRepo, champion: float, challenger: float) -> None:
    text = (repo.path / SERVICE_SPEC).read_text()
    text = re.sub(r"(role: champion\n    weight: )[0-9.]+", rf"\g<1>{champion}", text)
    text = re.sub(r"(role: challenger\n    weight: )[0-9.]+", rf"\g<1>{challenger}", text)
    (repo.path / SERVICE_SPEC).write_text(text)


def desired_at(repo: SpecRepo, env: str = "prod"):
    return load_desired(repo.path, env, repo.head())


def apply_manifests(repo: SpecRepo, home: Path, env: str = "prod"):
    """Plan the manifests resources against what the adapter observes in `home`, apply the changes
    through the real adapter; returns the plan."""
    desired = desired_at(repo, env)
    adapter = ManifestsAdapter(context_for(desired, home))
    adapters = {"manifests": adapter}
    observed = observe(adapters, desired.graph)
    the_plan = plan(desired, observed, adapters, suspended=())
    resources = desired.graph.by_key()
    for action in the_plan.changes:
        if action.kind == "manifests":
            adapter.apply(action, resources.get(action.key))
    return the_plan


def folder_files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*.yaml"))}


def without_sha(files: dict[str, str]) -> dict[str, str]:
    return {name: SHA.sub("<sha>", text) for name, text in files.items()}


def route_weights(folder: Path) -> dict[str, int]:
    route = next(yaml.safe_load(p.read_text()) for p in folder.glob("httproute-*.yaml"))
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
