"""Serving by entity key against real `bentoml serve` processes and a real redis-server on 127.0.0.1.

The store is filled by the real materialiser from a real Delta table; the service is deployed through the
services adapter as the daemon does it. Covers: a request with only the key predicts exactly what the full
feature dict predicts; batches; request-time features win; unknown key → 404 naming it; lookup metrics on
/metrics; a store whose features no longer match the model → 503 and the service Degraded with the reason;
a hung store (SIGSTOP) and a stopped one → 503 within the lookup timeout, never a hang.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from daemon.adapters.base import AdapterContext
from daemon.adapters.services.adapter import ServiceAdapter
from daemon.adapters.services.supervisor import Supervisor, service_processes
from daemon.core.plan import Op
from daemon.schema.environment import EnvironmentSpec
from flows.online.materialize import Job, materialize
from flows.online.store import connect, store_settings
from tests.helpers import services as cs
from tests.helpers.online import RedisServer

pytestmark = pytest.mark.integration

TIMEOUT_MS = 300
ROWS = [
    {"penguin_id": i, "bill_length_mm": 35.0 + i * 0.7, "flipper_length_mm": 180.0 + i, "year": 2007 + i % 3, "island": f"v{i % 3}"}
    for i in range(40)
]


def _table(rows: list[dict], year_type: pa.DataType | None = None) -> pa.Table:
    year_type = year_type or pa.int64()
    return pa.table({
        "penguin_id": pa.array([r["penguin_id"] for r in rows], pa.int64()),
        "bill_length_mm": pa.array([r["bill_length_mm"] for r in rows], pa.float64()),
        "flipper_length_mm": pa.array([r["flipper_length_mm"] for r in rows], pa.float64()),
        "year": pa.array([r["year"] if year_type == pa.int64() else str(r["year"]) for r in rows], year_type),
        "island": pa.array([r["island"] for r in rows], pa.string()),
    })


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("online-serving")
    redis = RedisServer(root / "redis").start()
    home = root / "home"
    env = EnvironmentSpec(name="test", online_store={"url": redis.url, "prefix": "s"})
    settings = store_settings(env.online_store)
    uri = str(root / "lake" / "penguins")
    write_deltalake(uri, _table(ROWS))
    job = Job(table="penguins", uri=uri, keys=["penguin_id"], fingerprint="fp1")
    materialize(connect(settings), "s", job, 0)
    models = cs.make_models(home, ("a", "b"))
    cs.release(home, "m1", models["a"], (models["b"],))
    port = cs.free_port()
    spec = cs.service_spec(port, features_from={"table": "penguins", "key": "penguin_id", "timeout_ms": TIMEOUT_MS})
    adapter = ServiceAdapter(AdapterContext(env, home, home, "rev1"))
    cs.deploy(adapter, cs.resource(spec, "fp1"), Op.CREATE)
    state = {"home": home, "url": f"http://127.0.0.1:{port}", "client": httpx.Client(timeout=10), "redis": redis,
             "settings": settings, "job": job, "uri": uri, "adapter": adapter, "spec": spec}
    try:
        yield state
    finally:
        state["client"].close()
        supervisor = Supervisor(home)
        supervisor.stop_all()
        assert service_processes(supervisor.routing_file("penguin_api")) == [], "processes left behind"
        redis.proc.send_signal(signal.SIGCONT)
        redis.stop()


def _predict(live, body):
    return live["client"].post(live["url"] + "/predict", json=body)


def _features(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "penguin_id"}


def test_key_only_predicts_the_same_as_the_full_feature_dict(live):
    for row in ROWS[:12]:
        by_key = _predict(live, {"penguin_id": row["penguin_id"], "user_id": f"u{row['penguin_id']}"})
        full = _predict(live, {"features": _features(row), "user_id": f"u{row['penguin_id']}"})
        assert by_key.status_code == 200, by_key.text
        assert full.status_code == 200, full.text
        a, b = by_key.json(), full.json()
        assert (a["variant"], a["model_version"], a["prediction"], a["probability"]) == \
               (b["variant"], b["model_version"], b["prediction"], b["probability"])


def test_batches_and_request_time_features(live):
    rows = ROWS[:5]
    by_key = _predict(live, {"instances": [{"penguin_id": r["penguin_id"]} for r in rows], "user_id": "batch"}).json()
    full = _predict(live, {"instances": [_features(r) for r in rows], "user_id": "batch"}).json()
    assert by_key["probabilities"] == full["probabilities"]
    override = {**_features(ROWS[3]), "island": "v0"}
    mixed = _predict(live, {"features": {"penguin_id": 3, "island": "v0"}, "user_id": "m"}).json()
    explicit = _predict(live, {"features": override, "user_id": "m"}).json()
    assert mixed["probability"] == explicit["probability"]


def test_unknown_entity_is_404_naming_the_key(live):
    answer = _predict(live, {"penguin_id": 999, "user_id": "x"})
    assert answer.status_code == 404
    body = answer.json()
    assert body["field"] == "penguin_id" and "penguin_id='999'" in body["error"] and "penguins" in body["error"]
    bad = _predict(live, {"penguin_id": {"nested": 1}})
    assert bad.status_code == 400 and bad.json()["field"] == "penguin_id"


def test_lookup_metrics_on_the_service(live):
    _predict(live, {"penguin_id": 1})
    _predict(live, {"penguin_id": 12345})
    metrics = live["client"].get(live["url"] + "/metrics").text
    assert 'specd_service_feature_lookups_total{result="hit",service="penguin_api",table="penguins"}' in metrics
    assert 'specd_service_feature_lookups_total{result="miss",service="penguin_api",table="penguins"}' in metrics
    assert "specd_service_feature_lookup_duration_seconds_bucket" in metrics


def test_store_features_that_do_not_match_the_model_are_refused(live):
    client = connect(live["settings"])
    write_deltalake(live["uri"], _table(ROWS, pa.string()), mode="overwrite", schema_mode="overwrite")
    result = materialize(client, "s", live["job"], 1)
    assert result.written == 0  # the same text, but the store now records year as a string
    assert '"year": "string"' in client.hget("s:_specd:meta:penguins", "schema").decode()
    deadline = time.monotonic() + 15  # the service refreshes the store's schema every few seconds
    while True:
        answer = _predict(live, {"penguin_id": 2})
        if answer.status_code == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert answer.status_code == 503, answer.text
    assert "year is string in the online store, the model expects int64" in answer.json()["error"]
    assert _predict(live, {"features": _features(ROWS[2])}).status_code == 200  # full requests still work
    observed = live["adapter"].observe([cs.resource(live["spec"], "fp1")])["service/penguin_api"]
    assert observed.health == "Degraded" and "does not match model penguin_sex:" in observed.message
    write_deltalake(live["uri"], _table(ROWS), mode="overwrite", schema_mode="overwrite")
    materialize(client, "s", live["job"], 2)
    deadline = time.monotonic() + 15
    while _predict(live, {"penguin_id": 2}).status_code != 200:
        assert time.monotonic() < deadline, "the service did not recover once the store matched again"
        time.sleep(0.5)
    assert live["adapter"].observe([cs.resource(live["spec"], "fp1")])["service/penguin_api"].health == "Healthy"


def test_hung_store_is_503_within_the_timeout(live):
    os.kill(live["redis"].proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = _predict(live, {"penguin_id": 4})
        elapsed = time.monotonic() - started
    finally:
        os.kill(live["redis"].proc.pid, signal.SIGCONT)
    assert answer.status_code == 503 and answer.json()["field"] == "features_from", answer.text
    assert elapsed < TIMEOUT_MS / 1000 + 1.0, f"answered after {elapsed:.2f} s"


def test_stopped_store_is_503_within_the_timeout(live):
    live["redis"].stop()
    for _ in range(3):
        started = time.monotonic()
        answer = _predict(live, {"penguin_id": 4})
        elapsed = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert "online store unavailable" in answer.json()["error"]
        assert elapsed < TIMEOUT_MS / 1000 + 1.0, f"answered after {elapsed:.2f} s"
    assert _predict(live, {"features": _features(ROWS[4])}).status_code == 200
