"""Every route of a real `bentoml serve` A/B service × credentials → 200/401/403 with the example policy,
and a policy change reaching the running workers through the routing file, without a restart."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from bentos import access
from daemon.adapters.services.supervisor import Supervisor, service_processes
from daemon.core.plan import Op
from daemon.shared.access_policy import ACCESS_DIR
from tests.helpers import services as cs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
KEYS = {"SPECD_VIEWER_KEY": "viewer-k", "SPECD_OPERATOR_KEY": "operator-k", "SPECD_PREDICT_KEY": "predict-k"}
WHO = {"none": {}, "viewer": {"X-API-Key": "viewer-k"}, "operator": {"Authorization": "Bearer operator-k"},
       "predict": {"X-API-Key": "predict-k"}}
OPEN = {"none": 200, "viewer": 200, "operator": 200, "predict": 200}
READ = {"none": 401, "viewer": 200, "operator": 200, "predict": 403}
# (method, path) → expected status per caller; /predict and /feedback bodies are valid
EXPECTED = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/livez"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/metrics"): READ,
    ("GET", "/docs.json"): READ,
    ("GET", "/no-such-path"): {"none": 401, "viewer": 404, "operator": 404, "predict": 403},  # deny by default
    ("GET", "/"): READ,
    ("GET", "/status"): READ,
    ("POST", "/predict"): {"none": 401, "viewer": 403, "operator": 200, "predict": 200},
    ("POST", "/feedback"): {"none": 401, "viewer": 403, "operator": 202, "predict": 403},
}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    for name, value in KEYS.items():
        mp.setenv(name, value)
    home = tmp_path_factory.mktemp("access-home")  # also the adapter's repo_dir
    (home / ACCESS_DIR).mkdir(parents=True)
    shutil.copy(ROOT / ACCESS_DIR / "policy.example.csv", home / ACCESS_DIR / "policy.csv")
    models = cs.make_models(home, ("a",))
    cs.release(home, "m1", models["a"])
    port = cs.free_port()
    spec = cs.service_spec(port, variants=[{"name": "champion", "role": "champion", "weight": 100}], workers=1)
    adapter = cs.adapter(home)
    cs.deploy(adapter, cs.resource(spec, "fp1"), Op.CREATE)
    state = {"home": home, "spec": spec, "adapter": adapter, "url": f"http://127.0.0.1:{port}", "client": httpx.Client(timeout=10)}
    try:
        yield state
    finally:
        state["client"].close()
        supervisor = Supervisor(home)
        supervisor.stop_all()
        mp.undo()
        assert service_processes(supervisor.routing_file("penguin_api")) == [], "processes left behind"


def call(live, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    if path == "/predict":
        return live["client"].post(live["url"] + path, json={"features": cs.ROW}, headers=headers)
    if path == "/feedback":
        operator = live["client"].post(live["url"] + "/predict", json={"features": cs.ROW}, headers=WHO["operator"])
        body = {"request_id": operator.json()["request_id"], "label": "male"}
        return live["client"].post(live["url"] + path, json=body, headers=headers)
    return live["client"].request(method, live["url"] + path, headers=headers)


def test_every_mapped_route_is_in_the_table():
    assert set(access.ROUTES) <= set(EXPECTED)
    assert {("GET", p) for p in access.OPEN_PATHS} <= set(EXPECTED)


def test_route_table_with_the_example_policy(live):
    got = {route: {who: call(live, *route, headers).status_code for who, headers in WHO.items()} for route in EXPECTED}
    assert got == EXPECTED


def test_routing_file_holds_digests_not_keys(live):
    text = Supervisor(live["home"]).routing_file("penguin_api").read_text()
    assert '"access"' in text and not any(value in text for value in KEYS.values())


def test_a_policy_change_reaches_the_workers_without_restart(live):
    supervisor = Supervisor(live["home"])
    pid = supervisor.read_record("penguin_api")["pid"]
    assert call(live, "POST", "/feedback", WHO["predict"]).status_code == 403
    policy = live["home"] / ACCESS_DIR / "policy.csv"
    policy.write_text(policy.read_text() + "p, role:predictor, services, feedback, penguin_*, allow\n")
    cs.deploy(live["adapter"], cs.resource(live["spec"], "fp2"))  # what the daemon does on merge (new fingerprint)
    assert call(live, "POST", "/feedback", WHO["predict"]).status_code == 202
    assert call(live, "GET", "/metrics", WHO["predict"]).status_code == 403
    assert supervisor.read_record("penguin_api")["pid"] == pid


def test_without_a_policy_the_service_is_open_again(live):
    (live["home"] / ACCESS_DIR / "policy.csv").unlink()
    cs.deploy(live["adapter"], cs.resource(live["spec"], "fp3"))
    assert call(live, "GET", "/metrics", {}).status_code == 200
    assert call(live, "POST", "/predict", {}).status_code == 200
