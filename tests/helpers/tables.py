"""Fixtures for the table tests: a spec checkout in a temp dir and a driver that plans and applies
table actions through the real TableAdapter into real Delta tables (no daemon, no Prefect)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from daemon.adapters.base import AdapterContext
from daemon.adapters.tables.adapter import TableAdapter
from daemon.core.compose import compose
from daemon.core.graph import Graph, build_graph
from daemon.core.plan import Plan, make_plan

ROOT = Path(__file__).resolve().parents[2]


class TableWorld:
    """A spec checkout + a state home; `plan()` and `converge()` run the real core and adapter."""

    def __init__(self, repo: Path, home: Path):
        self.repo, self.home = repo, home

    def write(self, rel: str, text: str) -> Path:
        path = self.repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def graph(self) -> tuple[Graph, AdapterContext]:
        composed = compose(self.repo, "dev")
        graph = build_graph(composed)
        tables = Graph(tuple(r for r in graph.resources if r.kind == "table"))
        ctx = AdapterContext(env=composed.env, home=self.home, repo_dir=self.repo, revision="rev-" + str(len(list(self.repo.rglob("*.yaml")))))
        return tables, ctx

    def plan(self) -> tuple[Plan, Graph, TableAdapter]:
        graph, ctx = self.graph()
        adapter = TableAdapter(ctx)
        return make_plan(ctx.revision, "dev", graph, adapter.observe(graph.resources), describe=adapter.describe), graph, adapter

    def converge(self) -> list[tuple[str, str, str]]:
        plan, graph, adapter = self.plan()
        done = []
        for action in plan.changes:
            outcome = adapter.apply(action, graph.by_key().get(action.key))
            done.append((action.name, str(action.op), outcome.message))
        return done

    def uri(self, name: str) -> str:
        return str(self.home / "lake" / "tables" / name)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TableWorld:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "environments", repo / "environments")
    (repo / "specs" / "tables").mkdir(parents=True)
    monkeypatch.setenv("SPECD_TABLE_BUILD_PROCESS", "0")
    return TableWorld(repo, tmp_path / "home")


@pytest.fixture
def examples(world: TableWorld) -> TableWorld:
    """The project's example table specs, presets and data."""
    shutil.copytree(ROOT / "specs" / "presets", world.repo / "specs" / "presets")
    shutil.copytree(ROOT / "specs" / "data", world.repo / "specs" / "data")
    for path in (ROOT / "specs" / "tables").glob("*.yaml"):
        shutil.copy(path, world.repo / "specs" / "tables" / path.name)
    return world
