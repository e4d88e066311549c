"""Every generated PromQL expression, proven against a real Prometheus scraping real endpoints.

A real Prometheus (Debian package) runs with the scrape config and rules specd generated for the example
specs; it scrapes the daemon's metrics server (`daemon.runtime.metrics.MetricsServer`, fed by the real table,
model and daemon recorders) and a real `bentoml serve` A/B service deployed by the services adapter.
After traffic (predictions, a refused oversized batch, feedback), every query of every dashboard and
every alert rule goes through Prometheus' HTTP API: each must parse and return data (for a rule, its
signal — the side of the threshold comparison — must, since a quiet alert returns nothing), and every
rule group must evaluate without error.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

from daemon.core.compose import compose  # noqa: E402
from daemon.core.graph import build_graph  # noqa: E402
from daemon.core.plan import Action, Op  # noqa: E402
from daemon.schema.promql import signal_of, substitute_grafana_variables  # noqa: E402
from tests.helpers import dashboards as cd  # noqa: E402
from tests.helpers import services as cs  # noqa: E402

DAEMON_METRICS = """
import signal, sys, time
from types import SimpleNamespace as S
from daemon.runtime import metrics
from daemon.adapters.models import metrics as models_metrics
from daemon.adapters.tables import metrics as tables_metrics
from flows.monitoring.check import DriftReport
from flows.monitoring.stats import ColumnDrift

tables, models, services = sys.argv[2].split(","), sys.argv[3].split(","), sys.argv[4].split(",")
statuses = [S(kind=k, name=n, sync="Synced", health="Healthy") for k, names in (("table", tables), ("model", models), ("service", services)) for n in names]
metrics.record_statuses(statuses)
metrics.set_revision(metrics.DESIRED_REVISION, "1111111")
metrics.set_revision(metrics.APPLIED_REVISION, "1111111")
metrics.IN_SYNC.set(1)
metrics.LAST_SUCCESS.set(time.time())
for table in tables:
    result = {"committed": True, "version": 3, "rows": {"read": 100, "written": 90, "quarantined": 5, "deduplicated": 3, "filtered": 2},
              "quality": {"failures": {"id.not_null": 5}}}
    tables_metrics.record_build(table, result, 1.5)
for model in models:
    for candidate in ("a", "b"):
        models_metrics.record_candidate(model, candidate, {"roc_auc": 0.9, "accuracy": 0.8, "ece": 0.04, "ece_uncalibrated": 0.09,
            "roc_curve": [[0.0, 0.0], [0.1, 0.7], [1.0, 1.0]], "pr_curve": [[0.0, 1.0], [0.7, 0.9], [1.0, 0.5]],
            "calibration_curve": [[0.15, 0.1], [0.55, 0.6], [0.9, 0.85]],
            "fairness": {"island": {"demographic_parity_difference": 0.05, "equal_opportunity_difference": 0.07}}}, 12.0)
    models_metrics.record_champion(model, f"{model}:a-0123456789abcdef")
    models_metrics.record_promotion(model, "promoted")
    columns = [ColumnDrift(f, "numeric", "wasserstein", 0.02, 0.1, False, 500) for f in ("bill_length_mm", "flipper_length_mm")]
    models_metrics.record_drift(DriftReport(model, dict(), 500, columns, ColumnDrift("prediction", "categorical", "jensenshannon", 0.01, 0.1, False, 500),
                                            share=0.0, share_threshold=0.5, enough_rows=True))  # what the model's drift check records
server = metrics.MetricsServer("127.0.0.1", int(sys.argv[1]), status=lambda: {}).start()
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:  # a reconcile loop's heartbeat: counters keep moving
    metrics.RECONCILE_RUNS.labels(result="noop").inc()
    metrics.RECONCILE_DURATION.observe(0.05)
    metrics.ACTIONS.labels(kind="table", op="update", result="success").inc()
    metrics.ACTION_DURATION.labels(kind="table", op="update").observe(1.2)
    for table in tables:
        tables_metrics.ROWS["written"].labels(table=table).inc(10)
        tables_metrics.ROWS["read"].labels(table=table).inc(11)
    time.sleep(0.5)
"""


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    assert shutil.which("prometheus"), "the Debian package 'prometheus' provides the server (.ci/system-packages)"
    home = tmp_path_factory.mktemp("dash-e2e")
    daemon_port, service_port, prom_port = cs.free_port(), cs.free_port(), cs.free_port()
    overrides = [f"env.daemon.metrics_port={daemon_port}", f"services.penguin_api.port={service_port}",
                 "env.prometheus.scrape_interval_s=1", "env.prometheus.evaluation_interval_s=1"]
    composed = compose(cd.ROOT, "dev", overrides)
    graph = build_graph(composed)
    names = {kind: [r.name for r in graph.resources if r.kind == kind] for kind in ("table", "model", "service")}
    assert names["service"] == ["penguin_api"], "the example service the services helper ships"
    dashboards = cd.adapter_for(composed, home)
    for resource in graph.resources:
        if resource.kind == "dashboard":
            dashboards.apply(Action("dashboard", resource.name, Op.CREATE, "e2e", resource.fingerprint), resource)

    processes: list[subprocess.Popen] = []
    env = {**os.environ, "PYTHONPATH": str(cd.ROOT)}
    processes.append(subprocess.Popen([sys.executable, "-c", textwrap.dedent(DAEMON_METRICS), str(daemon_port),
                                       ",".join(names["table"]), ",".join(names["model"]), ",".join(names["service"])],
                                      cwd=cd.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    models = cs.make_models(home, ("a", "b"))
    cs.release(home, "m1", models["a"], (models["b"],))
    service_adapter = cs.adapter(home)
    cs.deploy(service_adapter, cs.resource(cs.service_spec(service_port, workers=1), "fp1"), Op.CREATE)
    prom_dir = home / "grafana" / "prometheus"
    processes.append(subprocess.Popen(
        ["prometheus", f"--config.file={prom_dir / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    client = httpx.Client(base_url=f"http://127.0.0.1:{prom_port}", timeout=10)
    try:
        _wait(lambda: client.get("/-/ready").status_code == 200, 30, "prometheus ready")
        with httpx.Client(base_url=f"http://127.0.0.1:{service_port}", timeout=10) as svc:
            for i in range(40):
                answer = svc.post("/predict", json={"features": cs.ROW, "user_id": f"u{i}"})
                assert answer.status_code == 200, answer.text
                assert svc.post("/feedback", json={"request_id": answer.json()["request_id"], "label": i % 2}).status_code == 202
            assert svc.post("/predict", json={"instances": [cs.ROW] * 17}).status_code == 413
            _wait(lambda: _targets_up(client) == 2, 30, "both targets scraped")
            for i in range(20):  # more traffic after the first scrapes, so rates see an increase
                svc.post("/predict", json={"features": cs.ROW, "user_id": f"v{i}"})
                time.sleep(0.1)
        time.sleep(3)
        yield {"client": client, "graph": graph, "prom_dir": prom_dir}
    finally:
        client.close()
        for process in reversed(processes):
            _stop(process)
        from daemon.adapters.services.supervisor import Supervisor

        Supervisor(home).stop_all()


def _targets_up(client: httpx.Client) -> int:
    result = client.get("/api/v1/query", params={"query": "up"}).json()["data"]["result"]
    return sum(1 for r in result if r["value"][1] == "1")


def _query(client: httpx.Client, expr: str) -> list:
    answer = client.get("/api/v1/query", params={"query": expr})
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", f"{expr}: {body.get('error')}"
    return body["data"]["result"]


def test_every_dashboard_query_parses_and_returns_data(stack):
    client, graph = stack["client"], stack["graph"]
    checked, empty = 0, []
    for resource in graph.resources:
        if resource.kind != "dashboard":
            continue
        for panel in resource.spec.all_panels():
            for query in panel.all_queries():
                expr = substitute_grafana_variables(query.expr, "1m")
                checked += 1
                if not _query(client, expr):
                    empty.append(f"{resource.name} / {panel.title}: {expr}")
    assert checked > 100
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_every_alert_rule_parses_its_signal_has_data_and_groups_evaluate(stack):
    client, graph = stack["client"], stack["graph"]
    alerts = [(r.name, a) for r in graph.resources if r.kind == "dashboard" for a in r.spec.alerts]
    assert len(alerts) > 10
    empty = []
    for name, alert in alerts:
        _query(client, substitute_grafana_variables(alert.expr, "1m"))
        signal_expr = signal_of(substitute_grafana_variables(alert.expr, "1m"))
        if not _query(client, signal_expr):
            empty.append(f"{name} / {alert.name}: {signal_expr}")
    assert not empty, "alert signals without data:\n" + "\n".join(empty)
    groups = client.get("/api/v1/rules").json()["data"]["groups"]
    assert {g["name"] for g in groups} == {f"specd-{name}" for name, _ in alerts}
    time.sleep(1.5)  # one evaluation interval
    groups = client.get("/api/v1/rules").json()["data"]["groups"]
    broken = [(rule["name"], rule.get("lastError")) for g in groups for rule in g["rules"] if rule.get("health") == "err"]
    assert not broken, broken
