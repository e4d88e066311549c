"""Every route of the daemon's HTTP server × credentials → 200/202/401/403, with the policy loaded by a
real daemon cycle from a real git commit (and changed by the next commit, without a restart)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from daemon.runtime import metrics
from daemon.runtime.daemon import Daemon
from daemon.shared.access_policy import ACCESS_DIR

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"SPECD_VIEWER_KEY": "viewer-k", "SPECD_OPERATOR_KEY": "operator-k", "SPECD_PREDICT_KEY": "predict-k"}
WHO = {"none": {}, "viewer": {"X-API-Key": "viewer-k"}, "operator": {"Authorization": "Bearer operator-k"},
       "predict": {"X-API-Key": "predict-k"}, "wrong": {"X-API-Key": "not-a-key"}}
# route → expected status per caller, with the example policy
EXPECTED = {
    ("GET", "/healthz"): {"none": 200, "viewer": 200, "operator": 200, "predict": 200, "wrong": 200},
    ("GET", "/metrics"): {"none": 401, "viewer": 200, "operator": 200, "predict": 403, "wrong": 401},
    ("GET", "/status"): {"none": 401, "viewer": 200, "operator": 200, "predict": 403, "wrong": 401},
    ("POST", "/sync"): {"none": 401, "viewer": 403, "operator": 202, "predict": 403, "wrong": 401},
}


def call(port: int, method: str, path: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers,
                                     data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def daemon(spec_repo, tmp_path, monkeypatch):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    d = Daemon(home, str(spec_repo.path), "main", "dev", metrics_port=0, use_prefect=False)
    d._start_metrics(None)
    try:
        yield d
    finally:
        d.metrics_server.stop()


def commit_policy(spec_repo, text: str) -> str:
    spec_repo.write(f"{ACCESS_DIR}/policy.csv", text)
    return spec_repo.commit("access policy")


def test_every_route_is_in_the_table():
    assert set(EXPECTED) == set(metrics.ROUTES)


def test_without_a_policy_every_route_stays_open(daemon, spec_repo):
    daemon.cycle()
    port = daemon.metrics_server.port
    for method, path in EXPECTED:
        assert call(port, method, path, {}) in (200, 202), path


def test_route_table_with_the_example_policy(daemon, spec_repo):
    commit_policy(spec_repo, (ROOT / ACCESS_DIR / "policy.example.csv").read_text())
    daemon.cycle()
    port = daemon.metrics_server.port
    got = {route: {who: call(port, *route, headers) for who, headers in WHO.items()} for route in EXPECTED}
    assert got == EXPECTED


def test_a_policy_change_takes_effect_on_the_next_cycle(daemon, spec_repo):
    commit_policy(spec_repo, (ROOT / ACCESS_DIR / "policy.example.csv").read_text())
    daemon.cycle()
    port = daemon.metrics_server.port
    assert call(port, "POST", "/sync", WHO["viewer"]) == 403
    promoted = (ROOT / ACCESS_DIR / "policy.example.csv").read_text().replace(
        "g, key:SPECD_VIEWER_KEY, role:viewer", "g, key:SPECD_VIEWER_KEY, role:operator")
    commit_policy(spec_repo, promoted)
    assert call(port, "POST", "/sync", WHO["viewer"]) == 403  # merged, not yet reconciled
    daemon.cycle()
    assert call(port, "POST", "/sync", WHO["viewer"]) == 202
    assert daemon.wake.is_set()  # /sync started a cycle


def test_an_invalid_policy_commit_is_rejected_and_the_previous_policy_stays(daemon, spec_repo):
    commit_policy(spec_repo, (ROOT / ACCESS_DIR / "policy.example.csv").read_text())
    daemon.cycle()
    bad = commit_policy(spec_repo, "p, role:viewer, daemon, read, *, allow\ng, key:SPECD_VIEWER_KEY, role:root\n")
    daemon.cycle()
    assert daemon.state.rejected["revision"] == bad
    assert any(e.startswith(f"{ACCESS_DIR}/policy.csv:2: role: unknown role 'role:root'") for e in daemon.state.rejected["errors"])
    port = daemon.metrics_server.port
    assert call(port, "GET", "/status", {}) == 401
    assert call(port, "GET", "/status", WHO["viewer"]) == 200
    status = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{port}/status", headers=WHO["viewer"]), timeout=5).read())
    assert "viewer-k" not in json.dumps(status)
