"""The A/B service against real `bentoml serve` processes on 127.0.0.1 (one server for the module).

Deployed through the services adapter exactly as the daemon does it: routing file + supervisor. Covers
the weight split, sticky keys, 4xx messages, metrics, zero failed requests while the champion swaps and
swaps back (model restore), a model that fails to load, prediction/feedback logging + `specd ab`, crash
restart, adoption after a daemon restart, and a stop that leaves no process behind.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from bentos.routing import read_routing
from daemon.adapters.services.supervisor import Supervisor, process_start_time, service_processes
from daemon.core.plan import Op
from daemon.shared.errors import ApplyError
from tests.helpers import services as cs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    home = tmp_path_factory.mktemp("services-home")
    models = cs.make_models(home, ("a", "b", "broken"))
    cs.release(home, "m1", models["a"], (models["b"],))
    port = cs.free_port()
    spec = cs.service_spec(port)
    adapter = cs.adapter(home)
    outcome = cs.deploy(adapter, cs.resource(spec, "fp1"), Op.CREATE)
    state = {"home": home, "models": models, "port": port, "spec": spec, "adapter": adapter, "outcome": outcome,
             "url": f"http://127.0.0.1:{port}", "client": httpx.Client(timeout=10)}
    try:
        yield state
    finally:
        state["client"].close()
        supervisor = Supervisor(home)
        supervisor.stop_all()
        assert service_processes(supervisor.routing_file("penguin_api")) == [], "processes left behind"


def _predict(live, body, **kwargs):
    return live["client"].post(live["url"] + "/predict", json=body, **kwargs)


def test_deployed_service_is_healthy_and_observed(live):
    observed = live["adapter"].observe([cs.resource(live["spec"], "fp1")])["service/penguin_api"]
    assert observed.exists and observed.fingerprint == "fp1" and observed.health == "Healthy", observed
    workers = live["adapter"].worker_statuses("penguin_api")
    assert len(workers) == 2 and {w["applied_fingerprint"] for w in workers} == {"fp1"}
    assert "champion 90%" in live["outcome"].message


def test_split_matches_weights_within_tolerance(live):
    counts: Counter = Counter()
    tags = {}
    for _ in range(800):
        body = _predict(live, {"features": cs.ROW}).json()
        counts[body["variant"]] += 1
        tags[body["variant"]] = body["model_version"]
    # 800 draws at p = 0.1: sd = 8.5; 4.5 sd either side
    assert 42 <= counts["challenger"] <= 118, counts
    assert tags == {"champion": live["models"]["a"], "challenger": live["models"]["b"]}


def test_workers_run_uvloop_and_httptools_and_log_no_access_line(live):
    """uvicorn's "auto" picks uvloop + httptools in BentoML's worker (installed with specd); BentoML's
    access log is off unless SPECD_ACCESS_LOG=1, so 800 answered requests left no access line."""
    for _ in range(5):  # the worker that answers: each of the two reports its own loop
        assert live["client"].get(live["url"] + "/status").json()["server"] == {"loop": "uvloop", "http": "httptools"}
    log = Supervisor(live["home"]).log_file("penguin_api").read_text(errors="replace")
    assert "Starting production HTTP BentoServer" in log, log[-2000:]  # the right log
    assert "path=/predict" not in log, [line for line in log.splitlines() if "path=/predict" in line][:3]


def test_sticky_keys_stay_on_their_variant(live):
    routing = read_routing(Supervisor(live["home"]).routing_file("penguin_api"))
    for i in range(40):
        key = f"user-{i}"
        seen = {_predict(live, {"features": cs.ROW, "user_id": key}).json()["variant"] for _ in range(3)}
        assert seen == {routing.choose(key).name}, key


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (b'{"features": {"bill_length_mm": 1', 400, "body"),
        (json.dumps({"features": {**cs.ROW, "year": "2008"}}).encode(), 400, "features.year"),
        (json.dumps({"features": {**cs.ROW, "island": 1}}).encode(), 400, "features.island"),
        (json.dumps({"features": {k: v for k, v in cs.ROW.items() if k != "flipper_length_mm"}}).encode(), 400, "features.flipper_length_mm"),
        (json.dumps({"instances": [cs.ROW] * 17}).encode(), 413, "instances"),
        (json.dumps({"instances": [cs.ROW, {**cs.ROW, "bill_length_mm": [1]}]}).encode(), 400, "instances[1].bill_length_mm"),
    ],
)
def test_bad_requests_get_4xx_naming_the_field(live, raw, status, field):
    response = live["client"].post(live["url"] + "/predict", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == field and field in body["error"]


def test_docs_json_lists_the_apis_with_the_feature_fields(live):
    spec = live["client"].get(live["url"] + "/docs.json").json()
    schemas = spec["components"]["schemas"]
    predict = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"features", "instances", "user_id"} <= set(predict["properties"])  # user_id: the sticky field
    assert predict["properties"]["features"]["$ref"].endswith("/Features")
    features = schemas["Features"]["properties"]
    assert set(features) == set(cs.FEATURES)
    assert features["year"]["anyOf"][0]["type"] == "integer" and features["island"]["anyOf"][0]["type"] == "string"
    assert set(predict["example"]["features"]) == set(cs.FEATURES)  # what "Try it out" sends...
    tried = _predict(live, predict["example"])
    assert tried.status_code == 200, tried.text  # ...is a valid request
    answer = spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"request_id", "variant", "model_version", "prediction"} <= set(answer["properties"])
    feedback = spec["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"request_id", "label", "row"} <= set(feedback["properties"]) and "request_id" in feedback["required"]


def test_oversized_body_gets_413_and_deep_json_a_400(live):
    huge = json.dumps({"instances": [cs.ROW] * 20000}).encode()  # ~1.6 MB, over the default 1 MiB
    response = live["client"].post(live["url"] + "/predict", content=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["field"] == "body" and "limit of 1048576 bytes" in response.json()["error"]

    def chunks():  # no Content-Length: refused while reading
        for _ in range(20):
            yield b" " * 100_000

    response = live["client"].post(live["url"] + "/feedback", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "limit of 1048576 bytes" in response.json()["error"]
    deep = b'{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for path in ("/predict", "/feedback"):
        response = live["client"].post(live["url"] + path, content=deep, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and response.json()["field"] == "body", response.text
        assert "nested too deeply" in response.json()["error"]
    assert _predict(live, {"features": cs.ROW}).status_code == 200  # the workers are fine


def test_unknown_paths_add_no_metric_series(live):
    def series() -> set[str]:
        text = live["client"].get(live["url"] + "/metrics").text
        return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line.startswith("bentoml_service_request_total")}

    for i in range(30):
        assert live["client"].get(live["url"] + f"/probe-{i}").status_code == 404
        live["client"].post(live["url"] + f"/predict/extra-{i}", json={})
    before = series()
    for i in range(30, 60):
        live["client"].get(live["url"] + f"/probe-{i}")
    after = series()
    assert after == before, after - before
    assert not any("probe-" in s or "extra-" in s for s in after)
    assert any('endpoint="unknown"' in s for s in after)
    # BentoML's built-in metrics carry this service's name and version (its routing fingerprint)
    assert any('endpoint="/predict"' in s and 'service_name="penguin_api"' in s and 'service_version="fp1"' in s
               and 'http_response_code="200"' in s for s in after), after


def test_batch_request_and_metrics(live):
    response = _predict(live, {"instances": [cs.ROW, {**cs.ROW, "bill_length_mm": None}]})
    assert response.status_code == 200
    body = response.json()
    assert len(body["predictions"]) == 2 and len(body["probabilities"]) == 2 and body["request_id"]
    metrics = live["client"].get(live["url"] + "/metrics").text
    assert 'specd_service_requests_total{code="200",service="penguin_api",variant="champion"}' in metrics
    assert 'specd_service_requests_total{code="413",service="penguin_api",variant="champion"}' in metrics \
        or 'specd_service_requests_total{code="413",service="penguin_api",variant="challenger"}' in metrics
    assert 'specd_service_variant_weight{service="penguin_api",variant="challenger"} 0.1' in metrics
    for name in ("specd_service_request_duration_seconds_bucket", "specd_service_batch_size_bucket",
                 "specd_service_prediction_bucket", "bentoml_service_request_total"):
        assert name in metrics, name


def test_api_keys_from_secrets_swap_in_without_restart(live, monkeypatch):
    monkeypatch.setenv("SPECD_TEST_PENGUIN_KEY", "k-123")
    pid = Supervisor(live["home"]).read_record("penguin_api")["pid"]
    secured = type(live["spec"]).model_validate(
        {**live["spec"].model_dump(), "auth": {"required": True, "api_keys": ["secret:SPECD_TEST_PENGUIN_KEY"]}})
    cs.deploy(live["adapter"], cs.resource(secured, "fp-auth"))
    assert "k-123" not in Supervisor(live["home"]).routing_file("penguin_api").read_text()
    denied = _predict(live, {"features": cs.ROW})
    assert denied.status_code == 401 and denied.json()["field"] == "X-API-Key"
    assert _predict(live, {"features": cs.ROW}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert _predict(live, {"features": cs.ROW}, headers={"X-API-Key": "k-123"}).status_code == 200
    cs.deploy(live["adapter"], cs.resource(live["spec"], "fp1"))
    assert _predict(live, {"features": cs.ROW}).status_code == 200
    assert Supervisor(live["home"]).read_record("penguin_api")["pid"] == pid  # no restart


def test_zero_failed_requests_while_champion_swaps_and_is_restored(live):
    home, models = live["home"], live["models"]
    pid = Supervisor(home).read_record("penguin_api")["pid"]
    with cs.LoadLoop(live["url"] + "/predict", threads=4, max_s=60) as load:
        time.sleep(0.5)
        cs.release(home, "m2", models["b"], (models["a"],))  # a new model version: b wins
        cs.deploy(live["adapter"], cs.resource(live["spec"], "fp2"))
        swapped_at = time.monotonic()
        time.sleep(0.8)
        cs.release(home, "m1", models["a"], (models["b"],))  # git revert of the model: m1 is current again
        cs.deploy(live["adapter"], cs.resource(live["spec"], "fp1"))
        restored_at = time.monotonic()
        time.sleep(0.8)
    assert load.failures == [] and set(load.statuses) == {200}, (load.failures[:5], load.statuses)
    champion_tags_between = {tag for t, v, tag in load.served if v == "champion" and swapped_at < t < restored_at - 0.05}
    champion_tags_after = {tag for t, v, tag in load.served if v == "champion" and t > restored_at}
    assert models["b"] in champion_tags_between
    assert champion_tags_after == {models["a"]}
    assert len(load.served) > 100
    assert Supervisor(home).read_record("penguin_api")["pid"] == pid  # no restart
    observed = live["adapter"].observe([cs.resource(live["spec"], "fp2")])["service/penguin_api"]
    assert observed.fingerprint == "fp1" and "fp2" in observed.restorable  # plan: a revert is a restore


def test_model_that_fails_to_load_keeps_previous_routing(live):
    home, models = live["home"], live["models"]
    store = cs.bentoml_home(home)
    from flows.training.artifact import CONFIG, model_dir

    config_path = model_dir(models["broken"], store) / CONFIG
    config = json.loads(config_path.read_text())
    config["network"] = "NoSuchNetwork"  # weights intact (hash ok), but the model cannot be built
    config_path.write_text(json.dumps(config))
    cs.release(home, "m3", models["broken"], (models["a"],))
    with pytest.raises(ApplyError, match="failed to load, previous routing kept"):
        cs.deploy(live["adapter"], cs.resource(live["spec"], "fp3"))
    observed = live["adapter"].observe([cs.resource(live["spec"], "fp3")])["service/penguin_api"]
    assert observed.health == "Degraded" and "NoSuchNetwork" in observed.message, observed
    assert observed.fingerprint == "fp1"  # plan keeps trying fp3: the live state is still fp1
    assert read_routing(Supervisor(home).routing_file("penguin_api")).fingerprint == "fp1"
    body = _predict(live, {"features": cs.ROW, "user_id": "x"}).json()
    assert body["model_version"] in (models["a"], models["b"])
    cs.release(home, "m1", models["a"], (models["b"],))
    cs.deploy(live["adapter"], cs.resource(live["spec"], "fp1"))
    assert live["adapter"].observe([cs.resource(live["spec"], "fp1")])["service/penguin_api"].health == "Healthy"


def test_predictions_and_feedback_are_logged_and_compared(live, capsys):
    from deltalake import DeltaTable

    from daemon.cli import ab as cli_ab

    ids = []
    for i in range(60):
        body = _predict(live, {"features": {**cs.ROW, "bill_length_mm": float(i)}}).json()
        ids.append((body["request_id"], body["prediction"]))
    for n, (request_id, prediction) in enumerate(ids):
        label = prediction if n % 5 else (1 - prediction)  # 80 % correct
        assert live["client"].post(live["url"] + "/feedback", json={"request_id": request_id, "label": label}).status_code == 202
    bad = live["client"].post(live["url"] + "/feedback", json={"label": 1})
    assert bad.status_code == 400 and bad.json()["field"] == "request_id"
    routing = read_routing(Supervisor(live["home"]).routing_file("penguin_api"))
    settings = routing.settings["prediction_log"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        logged = {r["request_id"] for r in DeltaTable(settings["predictions_uri"]).to_pyarrow_table(columns=["request_id"]).to_pylist()}
        feedback = DeltaTable(settings["feedback_uri"]).to_pyarrow_table().num_rows
        if {i for i, _ in ids} <= logged and feedback >= 60:
            break
        time.sleep(0.2)
    assert {i for i, _ in ids} <= logged and feedback >= 60
    args = argparse.Namespace(service="penguin_api", champion="champion", alpha=0.05, json=True, home=str(live["home"]))
    assert cli_ab.run(args) == 0
    report = {v["variant"]: v for v in json.loads(capsys.readouterr().out)["variants"]}
    assert report["champion"]["requests"] > 60 and report["champion"]["feedback"] >= 40
    assert report["champion"]["metric"] == "accuracy" and 0.6 < report["champion"]["value"] < 0.95
    assert report["champion"]["ci_low"] < report["champion"]["value"] < report["champion"]["ci_high"]


def test_killed_service_process_is_restarted(live):
    home = live["home"]
    supervisor = Supervisor(home, backoff_base_s=0.2)  # a fresh instance: as after a daemon restart
    record = supervisor.read_record("penguin_api")
    old_workers = [w["pid"] for w in live["adapter"].worker_statuses("penguin_api")]
    assert len(old_workers) == 2
    os.kill(record["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    restarted = []
    while not restarted and time.monotonic() < deadline:
        restarted = supervisor.tick()
        time.sleep(0.1)
    assert restarted == ["penguin_api"]
    assert all(process_start_time(pid) is None for pid in old_workers)  # no orphaned worker holds the port
    supervisor.wait_ready("penguin_api", 60)
    new = supervisor.read_record("penguin_api")
    assert new["pid"] != record["pid"] and new["restarts"] == 1
    cs_adapter = cs.adapter(home)
    cs_adapter._wait_applied("penguin_api", "fp1", 2)
    assert _predict(live, {"features": cs.ROW}).status_code == 200
    state = cs_adapter.supervisor.ensure(cs_adapter.launch_for("penguin_api", live["spec"]))  # adopt, not restart
    assert state.pid == new["pid"] and state.ready
    assert process_start_time(new["pid"]) == new["start_time"]


def test_removed_spec_stops_every_process(live):
    home = live["home"]
    record = Supervisor(home).read_record("penguin_api")
    outcome = live["adapter"].apply(cs.Action("service", "penguin_api", Op.DELETE, "spec removed"), None)
    assert "stopped" in outcome.message
    assert service_processes(Supervisor(home).routing_file("penguin_api")) == []
    assert process_start_time(record["pid"]) is None
    assert live["adapter"].observe([]) == {}
    assert not Path(Supervisor(home).routing_file("penguin_api")).exists()
