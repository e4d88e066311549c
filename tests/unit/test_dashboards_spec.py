"""Dashboard specs, PromQL checks, generated dashboards and the Grafana JSON they render to."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from daemon.core.compose import compose
from daemon.core.documents import Composed, SpecDoc
from daemon.core.graph import build_graph
from daemon.schema.dashboard import MAX_UID_LENGTH, dashboard_uid, folder_uid
from daemon.schema.environment import EnvironmentSpec
from daemon.schema.promql import PromQLError, check_instant_query, metric_names, signal_of
from daemon.schema.service import ServiceSpec, default_port
from daemon.shared.errors import SpecErrors
from dashboards.derive import derive_all as derive_dashboards

ROOT = Path(__file__).resolve().parents[2]


def _repo(tmp_path: Path, dashboards: dict[str, str]) -> Path:
    (tmp_path / "environments").mkdir()
    for path in (ROOT / "environments").glob("*.yaml"):
        (tmp_path / "environments" / path.name).write_text(path.read_text())
    (tmp_path / "specs" / "dashboards").mkdir(parents=True)
    for name, text in dashboards.items():
        (tmp_path / "specs" / "dashboards" / f"{name}.yaml").write_text(text)
    return tmp_path


BAD = """\
title: Broken
panels:
  - title: fine
    expr: sum(rate(specd_service_requests_total[5m]))
  - title: unclosed
    expr: sum(rate(specd_service_requests_total[5m])
alerts:
  - name: Wrong
    expr: rate(specd_service_requests_total) > 1
    summary: rate of an instant vector
"""


def test_invalid_promql_in_a_custom_dashboard_is_a_spec_error_with_file_and_line(tmp_path):
    repo = _repo(tmp_path, {"broken": BAD})
    with pytest.raises(SpecErrors) as caught:
        compose(repo, "dev")
    text = str(caught.value)
    assert "specs/dashboards/broken.yaml:6: panels.1.expr" in text and "unclosed left parenthesis" in text
    assert "specs/dashboards/broken.yaml:9: alerts.0.expr" in text and "expected type matrix" in text


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("specd_in_sync[5m]", "range vector"),
        ("nosuch_function(specd_in_sync)", "unknown function"),
        ("sum(rate(x_total[$team_window]))", "template variables"),
        ("rate(x_total[$__bogus])", "unsupported Grafana variable"),
        ("   ", "empty"),
    ],
)
def test_queries_prometheus_would_refuse_are_rejected(expr, reason):
    with pytest.raises(PromQLError, match=reason):
        check_instant_query(expr)


def test_grafana_global_intervals_are_accepted_and_signal_strips_the_threshold():
    assert check_instant_query("sum(rate(x_total[$__rate_interval]))")
    assert metric_names("sum(rate(a_total[${__interval}])) / sum(b)") == ["a_total", "b"]
    assert " ".join(signal_of("(sum(rate(a_total[5m])) or vector(0)) > 0.5").split()) == "sum(rate(a_total{}[5m])) or vector(0)"
    assert signal_of("up == 0").startswith("up")


def test_uids_are_stable_short_and_distinct():
    long_a, long_b = "service-" + "a" * 60, "service-" + "a" * 59 + "b"
    assert dashboard_uid("platform") == "specd-platform"
    assert dashboard_uid(long_a) == dashboard_uid(long_a)
    assert len(dashboard_uid(long_a)) <= MAX_UID_LENGTH and len(dashboard_uid(long_b)) <= MAX_UID_LENGTH
    assert dashboard_uid(long_a) != dashboard_uid(long_b)
    assert folder_uid("specd-Prod EU") == "specd-prod-eu"


@pytest.fixture(scope="module")
def project():
    composed = compose(ROOT, "dev")
    return composed, build_graph(composed, read_text=lambda p: (ROOT / p).read_text())


def test_one_generated_dashboard_per_table_model_and_service_plus_the_platform(project):
    composed, graph = project
    resources = [d for d in composed.docs if d.kind in ("table", "model", "service")]
    assert resources, "the example specs define tables, a model and a service"
    dashboards = {d.name: d for d in composed.docs if d.kind == "dashboard"}
    for doc in resources:
        generated = dashboards[f"{doc.kind}-{doc.name}"]
        assert generated.spec.generated_for == f"{doc.kind}/{doc.name}" and generated.path == doc.path
        node = graph.by_key()[f"dashboard/{doc.kind}-{doc.name}"]
        assert f"{doc.kind}/{doc.name}" in node.depends_on, "the dashboard follows its resource in the graph"
    assert dashboards["platform"].spec.generated_for == "platform"
    assert "ml_overview" in dashboards, "custom dashboards from specs/dashboards/ sit beside the generated ones"


def _contract_metrics() -> set[str]:
    text = (ROOT / "daemon" / "CONTRACTS.md").read_text()
    section = text.split("## Metric names", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(specd_[a-z_]+)", section))


def test_every_generated_query_uses_only_contract_metrics(project):
    composed, _ = project
    contract = _contract_metrics() | {"up"}
    seen = set()
    for doc in composed.docs:
        if doc.kind != "dashboard":
            continue
        for expr in doc.spec.all_exprs():
            for name in metric_names(expr):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                assert name in contract or base in contract, f"{doc.name}: {name} is not in CONTRACTS.md ({expr})"
                seen.add(base if base in contract else name)
    assert contract - {"up"} <= seen, f"contract metrics no dashboard shows: {sorted(contract - seen)}"


def _service_doc(**overrides) -> SpecDoc:
    data = {"model": "m", "variants": [{"name": "champion", "role": "champion", "weight": 1}], **overrides}
    spec = ServiceSpec.model_validate(data)
    return SpecDoc("service", "churn-api", "specs/services/churn-api.yaml", spec, spec.model_dump(mode="json", by_alias=True))


def test_service_slo_sets_alert_thresholds_and_scrape_targets_follow_the_environment():
    env = EnvironmentSpec.model_validate({"name": "dev", "daemon": {"metrics_port": 9555}})
    docs = {d.name: d for d in derive_dashboards(Composed(env, (_service_doc(slo={"latency_p99_ms": 250, "error_rate": 0.02}),)))}
    alerts = {a.name: a.expr for a in docs["service-churn-api"].spec.alerts}
    assert alerts["SpecdServiceChurnApiLatencySLO"].endswith("> 0.25")
    fast, slow = alerts["SpecdServiceChurnApiErrorBudgetBurnFast"], alerts["SpecdServiceChurnApiErrorBudgetBurnSlow"]
    # burn rates 14.4 and 6 (page), 3 and 1 (ticket) of a 0.02 budget, each over a long and a short window
    assert "> 0.288 and" in fast and "[1h]" in fast and "[5m]" in fast and "> 0.12 and" in fast and "[6h]" in fast and "[30m]" in fast
    assert "> 0.06 and" in slow and "[1d]" in slow and "[2h]" in slow and "> 0.02 and" in slow and "[3d]" in slow
    assert all("$__" not in expr for expr in alerts.values())  # Prometheus evaluates alerts: no Grafana variables
    panels = [q.expr for p in docs["service-churn-api"].spec.all_panels() for q in p.all_queries()]
    assert any("[$__rate_interval]" in e for e in panels) and not any("[5m]" in e for e in panels)
    assert {a.name for a in docs["service-churn-api"].spec.annotations} == {"Weight changes", "Deploys"}
    scrape = {t.job: t for t in docs["platform"].spec.scrape}
    assert scrape["specd-daemon"].targets == ["127.0.0.1:9555"]
    assert scrape["specd-services"].targets == [f"127.0.0.1:{default_port('churn-api', env.services.port_base)}"]
    assert scrape["specd-services"].labels == {"specd_service": "churn-api"}


def test_rendered_json_is_grafana_11_deterministic_and_carries_every_query(project):
    from dashboards.render import SCHEMA_VERSION, build_dashboard

    composed, _ = project
    doc = next(d for d in composed.docs if d.kind == "dashboard" and d.name.startswith("service-"))
    first = build_dashboard(doc.name, doc.spec)
    assert json.dumps(first, sort_keys=True) == json.dumps(build_dashboard(doc.name, doc.spec), sort_keys=True)
    assert first["schemaVersion"] == SCHEMA_VERSION == 41 and first["uid"] == dashboard_uid(doc.name)
    panels = [p for p in first["panels"] if p["type"] != "row"]
    rendered = [t["expr"] for p in panels for t in p["targets"]]
    assert rendered == [q.expr for p in doc.spec.all_panels() for q in p.all_queries()]
    assert len({p["id"] for p in first["panels"]}) == len(first["panels"])
    assert [p["title"] for p in first["panels"] if p["type"] == "row"] == [r.title for r in doc.spec.rows]
    assert first["templating"]["list"][0]["type"] == "datasource"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)


def test_alert_rules_render_in_prometheus_format(project):
    from dashboards.prometheus import alert_rules

    composed, _ = project
    platform = next(d for d in composed.docs if d.name == "platform")
    rules = alert_rules("platform", platform.spec)
    group = rules["groups"][0]
    assert group["name"] == "specd-platform"
    by_name = {r["alert"]: r for r in group["rules"]}
    assert by_name["SpecdOutOfSync"]["for"] == "15m" and by_name["SpecdOutOfSync"]["expr"] == "specd_in_sync == 0"
    assert by_name["SpecdDaemonDown"]["labels"]["severity"] == "critical"
    assert yaml.safe_load(yaml.safe_dump(rules)) == rules
    assert all(r["annotations"]["description"] and r["annotations"]["runbook_url"].startswith("README.md#runbooks-") for r in group["rules"])
    based = alert_rules("platform", platform.spec, "https://git.example.invalid/specs/blob/main/")
    assert based["groups"][0]["rules"][0]["annotations"]["runbook_url"] == "https://git.example.invalid/specs/blob/main/README.md#runbooks-daemon-down"


def test_every_generated_runbook_anchor_is_documented(project):
    """The README's Runbooks section has a heading for every runbook an alert links to."""
    import re

    from tests.conftest import ROOT

    composed, _ = project
    anchors = {a.runbook_url.split("#", 1)[1] for d in composed.docs if d.kind == "dashboard" for a in d.spec.alerts if a.runbook_url}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r'<a id="(runbooks-[a-z0-9-]+)"></a>', readme.split("## Runbooks", 1)[1]))
    assert anchors and anchors <= documented, anchors - documented


def test_annotations_render_as_prometheus_annotation_queries(project):
    from dashboards.render import build_dashboard

    composed, _ = project
    doc = next(d for d in composed.docs if d.kind == "dashboard" and d.name.startswith("model-"))
    model = build_dashboard(doc.name, doc.spec)
    notes = {a["name"]: a for a in model["annotations"]["list"]}
    assert notes["Champion swaps"]["expr"].endswith("offset 5m)") and notes["Champion swaps"]["titleFormat"] == "champion is now {{candidate}}"
    assert notes["Champion swaps"]["datasource"]["uid"] == "${datasource}" and notes["Champion swaps"]["enable"] is True


def test_datasource_provisioning_points_grafana_at_prometheus():
    from dashboards.prometheus import datasource_provisioning

    env = EnvironmentSpec.model_validate({"name": "dev", "prometheus": {"url": "http://127.0.0.1:9091", "scrape_interval_s": 10}})
    (source,) = datasource_provisioning(env)["datasources"]
    assert source["url"] == "http://127.0.0.1:9091" and source["type"] == "prometheus" and source["isDefault"]
    assert source["jsonData"]["timeInterval"] == "10s" and source["uid"] == "specd-prometheus"


def test_validate_plan_and_observe_stay_light(tmp_path):
    code = f"""
import sys
from pathlib import Path
from daemon.core.compose import compose
from daemon.core.graph import build_graph
from daemon.adapters.base import AdapterContext
from daemon.adapters.dashboards import DashboardAdapter
composed = compose(Path({str(ROOT)!r}), "dev")
graph = build_graph(composed)
adapter = DashboardAdapter(AdapterContext(composed.env, Path({str(tmp_path)!r}), Path({str(ROOT)!r}), "x"))
observed = adapter.observe(graph.resources)
assert observed == {{}}, observed
heavy = [m for m in ("torch", "bentoml", "prefect", "grafana_foundation_sdk", "grafana_client") if m in sys.modules]
print("HEAVY", heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
