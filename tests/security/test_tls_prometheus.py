"""The generated Prometheus scrape config under `tls:`: `scheme: https` + `tls_config`, accepted by
`promtool check config`, and a real Prometheus (127.0.0.1) scrapes the daemon's /metrics over mTLS
(target up == 1) — while the same config with the wrong CA leaves the target down."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from daemon.runtime.daemon import Daemon
from daemon.schema.dashboard import DashboardSpec
from daemon.schema.environment import EnvironmentSpec
from dashboards import prometheus
from tests.conftest import free_port

pytestmark = pytest.mark.security


def scrape_yaml(env: EnvironmentSpec, port: int) -> dict:
    spec = DashboardSpec.model_validate({
        "title": "platform", "panels": [{"title": "up", "expr": "up"}],
        "scrape": [{"job": "specd", "targets": [f"127.0.0.1:{port}"]}],
    })
    return prometheus.scrape_config(env, spec)


def test_generated_config_is_https_and_promtool_accepts_it(tls_secret, tmp_path):
    assert shutil.which("promtool"), "promtool comes with the Debian package 'prometheus' (.ci/system-packages)"
    env = EnvironmentSpec.model_validate({"name": "dev", "tls": tls_secret.section(require_client_cert=True)})
    config = scrape_yaml(env, 9464)
    job = config["scrape_configs"][0]
    assert job["scheme"] == "https"
    assert job["tls_config"] == {"min_version": "TLS12", "ca_file": str(tls_secret.ca), "cert_file": str(tls_secret.cert),
                                 "key_file": str(tls_secret.key)}
    path = tmp_path / "prometheus.yml"
    path.write_text(prometheus.dump(config))
    check = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    plain = scrape_yaml(EnvironmentSpec(name="dev"), 9464)["scrape_configs"][0]
    assert "scheme" not in plain and "tls_config" not in plain


def _up(api: int) -> list[tuple[str, str]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/v1/query?query=up", timeout=2) as response:
        result = json.loads(response.read())["data"]["result"]
    return sorted((r["metric"]["job"], r["value"][1]) for r in result)


def test_a_real_prometheus_scrapes_the_daemon_over_mtls(spec_repo, tmp_path, tls_secret):
    assert shutil.which("prometheus"), "prometheus comes with the Debian package 'prometheus' (.ci/system-packages)"
    section = tls_secret.section(require_client_cert=True)
    spec_repo.write("environments/dev.yaml", (spec_repo.path / "environments" / "dev.yaml").read_text()
                    + tls_secret.yaml(require_client_cert=True))
    spec_repo.commit("tls")
    daemon = Daemon(tmp_path / "home", str(spec_repo.path), "main", "dev", metrics_port=0, use_prefect=False)
    daemon._start_metrics(daemon._bootstrap_environment())
    port = daemon.metrics_server.port
    env = EnvironmentSpec.model_validate({"name": "dev", "tls": section, "prometheus": {"scrape_interval_s": 1}})
    config = scrape_yaml(env, port)
    wrong = json.loads(json.dumps(config["scrape_configs"][0]))  # same target, a CA that did not sign it
    wrong["job_name"] = "wrong-ca"
    wrong["tls_config"]["ca_file"] = str(tls_secret.wrong_ca)
    config["scrape_configs"].append(wrong)
    config_dir = tmp_path / "prom"
    config_dir.mkdir()
    (config_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    api = free_port()
    proc = subprocess.Popen(["prometheus", f"--config.file={config_dir / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{api}"], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "prometheus.log", "wb"), cwd=config_dir)
    try:
        deadline, up = time.monotonic() + 40, []
        while time.monotonic() < deadline:
            try:
                up = _up(api)
            except OSError:
                up = []
            if ("specd", "1") in up and ("wrong-ca", "0") in up:
                break
            time.sleep(0.5)
        assert ("specd", "1") in up and ("wrong-ca", "0") in up, (up, Path(tmp_path / "prometheus.log").read_text()[-2000:])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        daemon.metrics_server.stop()
