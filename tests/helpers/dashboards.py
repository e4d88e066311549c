"""Helpers for the dashboards tests and benchmark: a tiny spec repo, one reconcile step, the fake Grafana.

Imported explicitly (`from tests.helpers import dashboards`) by `test_dashboards_*.py` and the benchmark; the
shared conftest belongs to the lead.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml

from daemon.adapters.base import AdapterContext
from daemon.adapters.dashboards import DashboardAdapter
from daemon.core.compose import compose
from daemon.core.graph import Graph, build_graph
from daemon.core.plan import Plan, make_plan

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fake-grafana-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def custom_dashboard(title: str = "Team overview", expr: str = "sum(rate(specd_service_requests_total[5m]))") -> dict[str, Any]:
    return {
        "title": title,
        "tags": ["team"],
        "panels": [{"title": "Requests per second", "expr": expr, "unit": "reqps"}],
        "alerts": [{"name": "TeamNoTraffic", "expr": f"{expr} == 0", "for": "30m", "summary": "no traffic"}],
    }


def write_repo(root: Path, dashboards: dict[str, dict[str, Any]], grafana: dict[str, Any] | None = None) -> Path:
    """A spec repo with the real environment overlays and the given custom dashboards."""
    (root / "environments").mkdir(parents=True, exist_ok=True)
    for path in (ROOT / "environments").glob("*.yaml"):
        (root / "environments" / path.name).write_text(path.read_text())
    if grafana is not None:
        (root / "environments" / "test.yaml").write_text(yaml.safe_dump({"defaults": ["base", "_self_"], "name": "test", "grafana": grafana}))
    directory = root / "specs" / "dashboards"
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        if old.stem not in dashboards:
            old.unlink()
    for name, data in dashboards.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def graph_of(repo: Path, env: str = "dev") -> tuple[Any, Graph]:
    composed = compose(repo, env)
    return composed, build_graph(composed, read_text=lambda p: (repo / p).read_text())


def adapter_for(composed: Any, home: Path, revision: str = "a" * 40) -> DashboardAdapter:
    return DashboardAdapter(AdapterContext(composed.env, home, home, revision))


def plan_for(adapter: DashboardAdapter, graph: Graph, env_name: str = "dev") -> Plan:
    observed = adapter.observe(graph.resources)
    return make_plan(adapter.ctx.revision, env_name, graph, observed, env_prune=adapter.ctx.env.prune, describe=adapter.describe)


def apply_all(adapter: DashboardAdapter, graph: Graph, plan: Plan) -> list[str]:
    desired = graph.by_key()
    return [adapter.apply(action, desired.get(action.key)).message for action in plan.changes]


def reconcile(repo: Path, home: Path, env: str = "dev", revision: str = "a" * 40) -> tuple[Plan, DashboardAdapter, Graph]:
    """One cycle for the dashboard kind: compose → graph → observe → plan → apply. Returns the plan applied."""
    composed, graph = graph_of(repo, env)
    adapter = adapter_for(composed, home, revision)
    plan = plan_for(adapter, graph, env)
    apply_all(adapter, graph, plan)
    return plan, adapter, graph
