"""Shared fixtures: temporary git repositories of specs, state homes, free ports, one Prefect server.

Area-specific helpers and fixtures live in tests/helpers/ (imported as tests.helpers.<area>). The Prefect server is started once per session (a
server start costs 10–20 s) and only by tests that ask for it.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Area fixtures live in tests/helpers/ and are registered here, once, for every suite.
pytest_plugins = ["tests.helpers.tables", "tests.helpers.tables_faults", "tests.helpers.tables_transforms", "tests.helpers.online", "tests.helpers.tls", "tests.helpers.s3"]


@pytest.fixture(autouse=True)
def _no_leaked_state_home_env() -> Iterator[None]:
    """In-process CLI calls (`specd apply` sets BENTOML_HOME and PREFECT_API_URL for itself and its
    children, and stops its Prefect server on the way out) and benchmarks must not point later tests at
    their model store, state home or a Prefect server that is gone."""
    keys = ("BENTOML_HOME", "SPECD_HOME", "PREFECT_API_URL", "SPECD_REPO_URL")
    before = {key: os.environ.get(key) for key in keys}
    root = logging.getLogger()
    handlers = set(root.handlers)
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    # An in-process Prefect run configures logging (a console handler on the captured stream of that test):
    # later tests' log lines would go to a closed stream ("--- Logging error ---"). pytest's own capture
    # handlers come and go with each phase and are left to it.
    for handler in list(root.handlers):
        if type(handler).__module__.startswith("_pytest"):
            continue
        stream = getattr(handler, "stream", None)
        if handler not in handlers or getattr(stream, "closed", False):
            root.removeHandler(handler)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SpecRepo:
    """A real git repository with specs/ and environments/, and helpers to commit to it."""

    def __init__(self, path: Path):
        self.path = path

    def git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
        return subprocess.run(["git", *args], cwd=self.path, check=True, capture_output=True, text=True, env=env).stdout.strip()

    def write(self, rel: str, text: str) -> Path:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"))
        return target

    def remove(self, rel: str) -> None:
        (self.path / rel).unlink()

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def spec_repo(tmp_path: Path) -> SpecRepo:
    """An empty repository with the project's environments (dev/staging/prod) committed on main."""
    path = tmp_path / "repo"
    path.mkdir()
    repo = SpecRepo(path)
    repo.git("init", "-q", "-b", "main")
    shutil.copytree(ROOT / "environments", path / "environments")
    repo.commit("environments")
    return repo


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("SPECD_HOME", str(path))
    monkeypatch.setenv("BENTOML_HOME", str(path / "bentoml"))
    return path


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real local Prefect server (SQLite) for the whole session; sets PREFECT_API_URL."""
    if os.environ.get("SPECD_TEST_PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = os.environ["SPECD_TEST_PREFECT_API_URL"]
        yield os.environ["PREFECT_API_URL"]
        return
    from daemon.runtime.prefect_server import LocalPrefectServer, configure_client_env

    home = tmp_path_factory.mktemp("prefect-home")
    configure_client_env(home)
    server = LocalPrefectServer(home, "127.0.0.1", free_port())
    url = server.start(timeout_s=120)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        yield url
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


@contextmanager
def http_server(handler: type) -> Iterator[int]:
    """A threaded HTTP server on 127.0.0.1 with a free port, for fake upstream APIs; yields the port."""
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
