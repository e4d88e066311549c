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
