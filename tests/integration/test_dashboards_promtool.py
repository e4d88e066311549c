"""`promtool check config` and `promtool check rules` accept the files generated from the example specs."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.helpers import dashboards as cd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    assert shutil.which("promtool"), "promtool comes with the Debian package 'prometheus' (.ci/system-packages)"
    home = tmp_path_factory.mktemp("dashboards-home")
    composed, graph = cd.graph_of(cd.ROOT)
    adapter = cd.adapter_for(composed, home)
    observed = adapter.observe(graph.resources)
    for resource in graph.resources:
        if resource.kind == "dashboard" and resource.key not in observed:
            from daemon.core.plan import Action, Op

            adapter.apply(Action("dashboard", resource.name, Op.CREATE, "test", resource.fingerprint), resource)
    return home / "grafana" / "prometheus", graph, composed.env


def test_promtool_accepts_the_scrape_config_and_every_rules_file(generated):
    directory, graph, _ = generated
    config = subprocess.run(["promtool", "check", "config", str(directory / "prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert config.returncode == 0, config.stdout + config.stderr
    rule_files = sorted(directory.glob("rules/*.yml"))
    with_alerts = [r for r in graph.resources if r.kind == "dashboard" and r.spec.alerts]
    assert len(rule_files) == len(with_alerts) > 3
    rules = subprocess.run(["promtool", "check", "rules", *map(str, rule_files)], capture_output=True, text=True, timeout=60)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert rules.stdout.count("SUCCESS") == len(rule_files)


def test_scrape_config_names_the_daemon_and_every_service(generated):
    directory, graph, env = generated
    config = yaml.safe_load((directory / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["specd-daemon"]["static_configs"][0]["targets"] == [f"{env.daemon.metrics_host}:{env.daemon.metrics_port}"]
    services = {g["labels"]["specd_service"] for g in jobs["specd-services"]["static_configs"]}
    assert services == {r.name for r in graph.resources if r.kind == "service"}
    assert config["rule_files"] == ["rules/*.yml"]


def _expected(rule: dict, **series_labels: str) -> dict:
    return {"exp_labels": {**rule["labels"], "alertname": rule["alert"], **series_labels}, "exp_annotations": rule["annotations"]}


def _requests(service: str, per_minute_ok: int, per_minute_5xx: int, minutes: int) -> list[dict]:
    metric = "specd_service_requests_total"
    return [
        {"series": f'{metric}{{service="{service}",variant="champion",code="200"}}', "values": f"0+{per_minute_ok}x{minutes}"},
        {"series": f'{metric}{{service="{service}",variant="champion",code="500"}}', "values": f"0+{per_minute_5xx}x{minutes}"},
    ]


def test_promtool_test_rules_burn_rate_and_sync_alerts_fire_when_they_should(generated, tmp_path):
    """`promtool test rules`: a fast 5xx burn pages, a short burst does not, a slow burn tickets only, a healthy
    service stays quiet, and the daemon's out-of-sync alert waits for its delay."""
    directory, graph, _ = generated
    service = next(r for r in graph.resources if r.kind == "service")
    slo = service.spec.slo.error_rate
    rules_file = directory / "rules" / f"service-{service.name}.yml"
    rules = {r["alert"]: r for r in yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]}
    fast = next(r for name, r in rules.items() if name.endswith("ErrorBudgetBurnFast"))
    slow = next(r for name, r in rules.items() if name.endswith("ErrorBudgetBurnSlow"))
    platform = {r["alert"]: r for r in yaml.safe_load((directory / "rules" / "platform.yml").read_text())["groups"][0]["rules"]}
    burst = round(100 * slo * 20)  # 20× the budget: both fast windows exceed 14.4×
    slow_burn = round(100 * slo * 4)  # 4×: above the 3× ticket threshold, below the 6× page
    tests = [
        {"interval": "1m", "input_series": _requests(service.name, 100 - burst, burst, 150), "alert_rule_test": [
            {"eval_time": "75m", "alertname": fast["alert"], "exp_alerts": [_expected(fast)]},
        ]},
        {"interval": "1m", "input_series": [  # a 5-minute burst of 50 % errors after an hour of none: no page
            {"series": f'specd_service_requests_total{{service="{service.name}",variant="champion",code="200"}}', "values": "0+100x130"},
            {"series": f'specd_service_requests_total{{service="{service.name}",variant="champion",code="500"}}', "values": "0x60 100+100x4 500x65"},
        ], "alert_rule_test": [
            {"eval_time": "66m", "alertname": fast["alert"], "exp_alerts": []},
        ]},
        {"interval": "1m", "input_series": _requests(service.name, 100 - slow_burn, slow_burn, 27 * 60), "alert_rule_test": [
            {"eval_time": "26h", "alertname": slow["alert"], "exp_alerts": [_expected(slow)]},
            {"eval_time": "26h", "alertname": fast["alert"], "exp_alerts": []},
        ]},
        {"interval": "1m", "input_series": _requests(service.name, 1000, 1, 26 * 60), "alert_rule_test": [  # 0.1 %: within budget
            {"eval_time": "25h", "alertname": fast["alert"], "exp_alerts": []},
            {"eval_time": "25h", "alertname": slow["alert"], "exp_alerts": []},
        ]},
        {"interval": "1m", "input_series": [{"series": 'specd_in_sync{job="specd-daemon"}', "values": "1 1 0x40"}], "alert_rule_test": [
            {"eval_time": "10m", "alertname": "SpecdOutOfSync", "exp_alerts": []},
            {"eval_time": "30m", "alertname": "SpecdOutOfSync", "exp_alerts": [_expected(platform["SpecdOutOfSync"], job="specd-daemon")]},
        ]},
    ]
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules_file), str(directory / "rules" / "platform.yml")],
                                         "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_test_rules_model_drift_alert(generated, tmp_path):
    """The model drift alert fires after 15 minutes at or above the drift-share threshold, never below it;
    only a monitored model has one."""
    from daemon.schema.dashboard import DashboardSpec
    from dashboards.panels import model_dashboard

    directory, graph, _ = generated
    model = next(r for r in graph.resources if r.kind == "model" and r.spec.monitoring is not None)
    unmonitored = DashboardSpec.model_validate(model_dashboard(model.name, {**model.spec.model_dump(mode="json"), "monitoring": None}))
    assert not any(a.name.endswith("Drift") for a in unmonitored.alerts) and "Drift" not in [r.title for r in unmonitored.rows]
    rules_file = directory / "rules" / f"model-{model.name}.yml"
    rules = {r["alert"]: r for r in yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]}
    drift = next(r for name, r in rules.items() if name.endswith("Drift"))
    assert drift["annotations"]["runbook_url"].endswith("#runbooks-model-drift")
    share, threshold = "specd_model_drift_share", "specd_model_drift_share_threshold"
    labels = f'{{job="specd-daemon",model="{model.name}"}}'
    tests = [
        {"interval": "1m", "input_series": [{"series": share + labels, "values": "0.1x10 0.6x30"},
                                            {"series": threshold + labels, "values": "0.5x40"}], "alert_rule_test": [
            {"eval_time": "20m", "alertname": drift["alert"], "exp_alerts": []},
            {"eval_time": "30m", "alertname": drift["alert"], "exp_alerts": [_expected(drift)]},
        ]},
        {"interval": "1m", "input_series": [{"series": share + labels, "values": "0.4x40"},
                                            {"series": threshold + labels, "values": "0.5x40"}], "alert_rule_test": [
            {"eval_time": "35m", "alertname": drift["alert"], "exp_alerts": []},
        ]},
    ]
    test_file = tmp_path / "drift_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
