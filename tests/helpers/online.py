"""Fixtures for the online-store tests: a private `redis-server` on a free loopback port (never a fake),
and a world that plans and applies tables and their `online/<table>` resources through the real adapters."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from daemon.adapters.base import AdapterContext
from daemon.adapters.online.adapter import OnlineAdapter
from daemon.adapters.tables.adapter import TableAdapter
from daemon.core.compose import compose
from daemon.core.graph import Graph, build_graph
from daemon.core.plan import Plan, make_plan
from tests.helpers.tables import TableWorld

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """`redis-server --save '' --appendonly no` on 127.0.0.1:<free port>, stopped by its pid."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (bash .ci/system-packages installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                                      "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5, decode_responses=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


class OnlineWorld(TableWorld):
    """Tables + online resources through the real adapters, against a real Redis."""

    def __init__(self, repo: Path, home: Path, redis: RedisServer):
        super().__init__(repo, home)
        self.redis = redis
        self.overrides = [f"env.online_store.url={redis.url}", "env.online_store.prefix=t", "env.online_store.batch_rows=500"]

    def graph(self) -> tuple[Graph, AdapterContext]:
        composed = compose(self.repo, "dev", self.overrides)
        graph = build_graph(composed)
        resources = Graph(tuple(r for r in graph.resources if r.kind in ("table", "online")))
        ctx = AdapterContext(env=composed.env, home=self.home, repo_dir=self.repo, revision="rev-" + str(len(list(self.repo.rglob("*.yaml")))))
        return resources, ctx

    def plan(self) -> tuple[Plan, Graph, dict]:  # type: ignore[override]
        graph, ctx = self.graph()
        adapters = {"table": TableAdapter(ctx), "online": OnlineAdapter(ctx)}
        observed = {}
        for kind, adapter in adapters.items():
            observed.update(adapter.observe([r for r in graph.resources if r.kind == kind]))

        def describe(action, resource, live=None):
            return adapters[action.kind].describe(action, resource, live)

        return make_plan(ctx.revision, "dev", graph, observed, describe=describe), graph, adapters

    def converge(self) -> list[tuple[str, str, str]]:
        plan, graph, adapters = self.plan()
        done = []
        for action in plan.changes:
            outcome = adapters[action.kind].apply(action, graph.by_key().get(action.key))
            done.append((f"{action.kind}/{action.name}", str(action.op), outcome.message))
        return done

    def observed(self, key: str):
        graph, ctx = self.graph()
        kind = key.split("/")[0]
        adapter = OnlineAdapter(ctx) if kind == "online" else TableAdapter(ctx)
        return adapter.observe([r for r in graph.resources if r.kind == kind]).get(key)


@pytest.fixture
def online_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> OnlineWorld:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "environments", repo / "environments")
    (repo / "specs" / "tables").mkdir(parents=True)
    monkeypatch.setenv("SPECD_TABLE_BUILD_PROCESS", "0")
    return OnlineWorld(repo, tmp_path / "home", redis_server)
