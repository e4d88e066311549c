"""Prometheus configuration from the dashboard specs: one scrape config, one rules file per dashboard.

The platform dashboard carries the scrape targets (the daemon and every service), each generated or
custom dashboard its alert rules; they are written beside the dashboards under
`<state home>/grafana/prometheus/` in the format `promtool check config` / `check rules` accept. The
config loads `rules/*.yml`, so adding or removing a resource adds or removes exactly one file.
With the environment's `tls` serving, every job scrapes over `https` with a `tls_config` (the CA, and
specd's certificate and key under mTLS): the daemon and the services listen on TLS only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from daemon.schema.dashboard import DashboardSpec
from daemon.schema.environment import EnvironmentSpec

PROMETHEUS_DIR = "prometheus"
CONFIG_FILE = "prometheus.yml"
RULES_DIR = "rules"
DATASOURCE_FILE = "provisioning/datasources/specd.yaml"  # relative to the Grafana root, beside provisioning/dashboards
DATASOURCE_UID = "specd-prometheus"


def _seconds(value: float) -> str:
    return f"{value:g}s" if value >= 1 else f"{int(value * 1000)}ms"


def scrape_config(env: EnvironmentSpec, spec: DashboardSpec) -> dict[str, Any]:
    """prometheus.yml: global intervals, the rules glob, one job per scrape group of the platform spec."""
    jobs: dict[str, dict[str, Any]] = {}
    for target in spec.scrape:
        job = jobs.setdefault(target.job, {"job_name": target.job, "metrics_path": target.metrics_path, **tls_job(env),
                                           "static_configs": []})
        group: dict[str, Any] = {"targets": list(target.targets)}
        if target.labels:
            group["labels"] = dict(sorted(target.labels.items()))
        job["static_configs"].append(group)
    return {
        "global": {
            "scrape_interval": _seconds(env.prometheus.scrape_interval_s),
            "evaluation_interval": _seconds(env.prometheus.evaluation_interval_s),
            "external_labels": {"specd_env": env.name},
        },
        "rule_files": [f"{RULES_DIR}/*.yml"],
        "scrape_configs": list(jobs.values()),
    }


def tls_job(env: EnvironmentSpec) -> dict[str, Any]:
    """`scheme: https` and `tls_config` when specd's listeners speak TLS (paths resolved from secrets now)."""
    if not env.tls.serving:
        return {}
    from daemon.shared import tls

    mtls = env.tls.require_client_cert  # the key is resolved only when Prometheus must present it
    files = tls.resolve({"ca": env.tls.ca, **({"cert": env.tls.cert, "key": env.tls.key} if mtls else {}),
                         "min_version": env.tls.min_version, "require_client_cert": mtls})
    if files is None:
        return {"scheme": "https", "tls_config": {"min_version": env.tls.min_version.replace("v", "").replace(".", "")}}
    config: dict[str, Any] = {"min_version": files.min_version.replace("v", "").replace(".", "")}
    if files.ca:
        config["ca_file"] = files.ca
    if files.require_client_cert:
        config.update(cert_file=files.cert, key_file=files.key)
    return {"scheme": "https", "tls_config": config}


def datasource_provisioning(env: EnvironmentSpec) -> dict[str, Any]:
    """Grafana datasource provisioning: the Prometheus the generated dashboards query, as the default datasource."""
    return {
        "apiVersion": 1,
        "datasources": [{
            "name": f"specd Prometheus ({env.name})",
            "uid": env.grafana.datasource_uid or DATASOURCE_UID,
            "type": "prometheus",
            "access": "proxy",
            "url": env.prometheus.url,
            "isDefault": True,
            "editable": False,  # Git is the source of truth
            "jsonData": {"timeInterval": _seconds(env.prometheus.scrape_interval_s)},  # $__rate_interval follows the scrape interval
        }],
    }


def runbook_url(url: str, base: str = "") -> str:
    """An absolute runbook URL stays; a relative one (README.md#runbooks-…) is joined to the environment's base."""
    if not url or "://" in url or not base:
        return url
    return base.rstrip("/") + "/" + url.lstrip("/")


def alert_rules(name: str, spec: DashboardSpec, runbook_base: str = "") -> dict[str, Any] | None:
    """The rules file of one dashboard resource (None when it has no alerts)."""
    if not spec.alerts:
        return None
    rules = []
    for alert in spec.alerts:
        annotations = {"summary": alert.summary}
        if alert.description:
            annotations["description"] = alert.description
        if alert.runbook_url:
            annotations["runbook_url"] = runbook_url(alert.runbook_url, runbook_base)
        rules.append(
            {
                "alert": alert.name,
                "expr": alert.expr,
                "for": alert.for_,
                "labels": {"severity": alert.severity, "specd_dashboard": name, **dict(sorted(alert.labels.items()))},
                "annotations": annotations,
            }
        )
    return {"groups": [{"name": f"specd-{name}", "rules": rules}]}


def dump(document: dict[str, Any]) -> str:
    header = "# Generated by specd from the specs in Git; edits here are drift and will be replaced.\n"
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)


def rules_path(root: Path, name: str) -> Path:
    return root / PROMETHEUS_DIR / RULES_DIR / f"{name}.yml"


def config_path(root: Path) -> Path:
    return root / PROMETHEUS_DIR / CONFIG_FILE


def reload(url: str, timeout_s: float = 5.0) -> str:
    """POST Prometheus' /-/reload (needs --web.enable-lifecycle); returns a short status for the outcome."""
    import httpx

    try:
        response = httpx.post(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"prometheus reload failed: {type(exc).__name__}"
    return "prometheus reloaded" if response.status_code < 300 else f"prometheus reload answered {response.status_code}"
