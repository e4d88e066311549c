"""What each generated dashboard shows and alerts on, per resource kind, as dashboard-spec data.

One function per kind returns the dict a `DashboardSpec` validates: rows of panels (PromQL over the
CONTRACTS.md metrics), alert rules, annotations and — for the platform — the Prometheus scrape targets.

Panels use Grafana's `$__rate_interval` (never shorter than four scrapes, so a zoomed-in rate is not empty
and a zoomed-out one is not jagged); alert rules run in Prometheus, which has no such variable, so they use
fixed windows. Error-rate SLOs alert with the multi-window, multi-burn-rate rules of Google's SRE workbook:
page when the error budget (`1 - SLO` over 30 days) burns 14.4× too fast over 1 h (and still over 5 m) or
6× over 6 h (and 30 m); open a ticket at 3× over 1 d (and 2 h) or 1× over 3 d (and 6 h). Every generated
alert has a description and a runbook URL (an anchor of the README's "Runbooks" section).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

WINDOW = "$__rate_interval"  # panels (Grafana)
ALERT_WINDOW = "5m"  # alert rules (Prometheus)
RUNBOOKS = "README.md#runbooks"  # prefixed with env.prometheus.runbook_base_url when set
# (long window, short window, burn rate, severity, for): the SRE workbook's recommended pairs for a 30-day budget
BURN_RATE_WINDOWS = (
    ("1h", "5m", 14.4, "critical", "2m"),
    ("6h", "30m", 6.0, "critical", "15m"),
    ("1d", "2h", 3.0, "warning", "1h"),
    ("3d", "6h", 1.0, "warning", "3h"),
)
QUANTILES = ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"))
DAEMON_JOB = "specd-daemon"
SERVICES_JOB = "specd-services"


def _sel(metric: str, **labels: str) -> str:
    """`metric{k="v"}`; a value starting with `~` is a regex match (`code="~5.."` → `code=~"5.."`)."""
    inner = ",".join(f'{k}=~"{v[1:]}"' if v.startswith("~") else f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}" if inner else metric


def _rate(metric: str, by: str = "", window: str = WINDOW, **labels: str) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({_sel(metric, **labels)}[{window}]))"


def _quantile(q: float, histogram: str, by: str = "", window: str = WINDOW, **labels: str) -> str:
    keys = ", ".join(["le"] + ([by] if by else []))
    return f"histogram_quantile({q}, sum by ({keys}) (rate({_sel(histogram + '_bucket', **labels)}[{window}])))"


def _mean(histogram: str, by: str = "", **labels: str) -> str:
    return f"{_rate(histogram + '_sum', by, **labels)} / {_rate(histogram + '_count', by, **labels)}"


def _panel(title: str, expr: str, legend: str = "", unit: str = "short", **extra: Any) -> dict[str, Any]:
    return {"title": title, "expr": expr, "legend": legend, "unit": unit, **extra}


def _multi(title: str, queries: list[tuple[str, str]], unit: str = "short", **extra: Any) -> dict[str, Any]:
    return {"title": title, "queries": [{"expr": e, "legend": legend} for e, legend in queries], "unit": unit, **extra}


def _instant_table(title: str, queries: list[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "title": title,
        "type": "table",
        "queries": [{"expr": e, "legend": legend, "instant": True} for e, legend in queries],
        **extra,
    }


def _alert(name: str, expr: str, summary: str, for_: str, severity: str, resource: str, description: str, runbook: str) -> dict[str, Any]:
    return {
        "name": name,
        "expr": expr,
        "for": for_,
        "severity": severity,
        "summary": summary,
        "description": description,
        "runbook_url": f"{RUNBOOKS}-{runbook}",
        "labels": {"specd_resource": resource},
    }


def _new_series(selector: str, window: str = "5m") -> str:
    """An annotation query: the series of an info metric that appeared in the last `window` (a label changed)."""
    return f"{selector} unless ({selector} offset {window})"


def _annotation(name: str, expr: str, title: str, colour: str) -> dict[str, Any]:
    return {"name": name, "expr": expr, "title": title, "color": colour}


def _error_ratio(requests: str, window: str, **labels: str) -> str:
    errors = f"sum(rate({_sel(requests, code='~5..', **labels)}[{window}]))"
    total = f"sum(rate({_sel(requests, **labels)}[{window}]))"
    return f"(({errors} or ({total} * 0)) / {total})"


def burn_rate_alerts(name: str, requests: str, slo_error_rate: float, resource: str, **labels: str) -> list[dict[str, Any]]:
    """Multi-window, multi-burn-rate alerts on an error-rate SLO: a page for fast burns, a ticket for slow ones."""
    alerts = []
    for severity, pairs in (("critical", BURN_RATE_WINDOWS[:2]), ("warning", BURN_RATE_WINDOWS[2:])):
        clauses = []
        for long_window, short_window, burn, _, _ in pairs:
            threshold = f"{burn * slo_error_rate:.6g}"
            clauses.append(f"({_error_ratio(requests, long_window, **labels)} > {threshold} and "
                           f"{_error_ratio(requests, short_window, **labels)} > {threshold})")
        speed = "Fast" if severity == "critical" else "Slow"
        windows = ", ".join(f"{b:g}× over {lw} and {sw}" for lw, sw, b, _, _ in pairs)
        alerts.append(_alert(
            f"SpecdService{_camel(name)}ErrorBudgetBurn{speed}", " or ".join(clauses),
            f"service {name}: the 5xx error budget ({slo_error_rate:g}) is burning {'fast' if severity == 'critical' else 'slowly'}",
            pairs[0][4], severity, resource,
            f"The 5xx ratio of service {name} exceeds its SLO of {slo_error_rate:g} at a rate that spends the 30-day "
            f"error budget too soon ({windows}). Check the Errors row of its dashboard: which variant, which code.",
            "error-budget-burn"))
    return alerts


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


def _online_row(svc: dict[str, str], zero: str) -> dict[str, Any]:
    """Entity lookups in the online store; `zero` (0 while the service has traffic) when no request has
    come by key yet, so the panels read 0 rather than "no data"."""
    lookups = "specd_service_feature_lookups_total"
    hist = "specd_service_feature_lookup_duration_seconds"
    return {"title": "Online features", "panels": [
        _multi("Feature lookup latency", [(f"{_quantile(q, hist, **svc)} or {zero}", label) for q, label in QUANTILES], "s"),
        _panel("Feature lookups by result", f"{_rate(lookups, 'result', **svc)} or {zero}", "{{result}}", "reqps"),
        _panel("Feature lookup hit ratio", f'({_rate(lookups, **svc, result="hit")} / {_rate(lookups, **svc)}) or {zero}', "hit ratio", "percentunit"),
    ]}


def service_dashboard(name: str, data: dict[str, Any]) -> dict[str, Any]:
    svc = {"service": name}
    requests = "specd_service_requests_total"
    errors = f'sum by (variant) (rate({_sel(requests, code="~5..", **svc)}[{WINDOW}]))'
    client_errors = f'sum by (variant) (rate({_sel(requests, code="~4..", **svc)}[{WINDOW}]))'
    per_variant = _rate(requests, "variant", **svc)
    zero = f"({per_variant} * 0)"
    error_ratio = f"({errors} or {zero}) / {per_variant}"
    total = _rate(requests, **svc)
    slo = data.get("slo") or {}
    p99_slo_s = float(slo.get("latency_p99_ms", 100.0)) / 1000.0
    max_error_rate = float(slo.get("error_rate", 0.01))
    variants = ", ".join(f"{v.get('name')} {v.get('weight')}" for v in data.get("variants", []))
    latency = "specd_service_request_duration_seconds"
    rows = [
        {"title": "Traffic", "panels": [
            _panel("Requests per second by variant", per_variant, "{{variant}}", "reqps"),
            _panel("Traffic share by variant", f"{per_variant} / ignoring(variant) group_left {total}", "{{variant}}", "percentunit", stack=True),
            _panel("Configured weight by variant", _sel("specd_service_variant_weight", **svc), "{{variant}}", "percentunit"),
        ]},
        {"title": "Latency", "panels": [
            _multi("Latency percentiles by variant", [(_quantile(q, latency, "variant", **svc), f"{label} {{{{variant}}}}") for q, label in QUANTILES], "s", width=16),
            _multi("p99 latency against the SLO", [(_quantile(0.99, latency, **svc), "p99"), (f"vector({p99_slo_s})", "SLO")], "s", width=8),
        ]},
        {"title": "Errors", "panels": [
            _multi("Error ratio by variant", [(error_ratio, "5xx {{variant}}"), (f"({client_errors} or {zero}) / {per_variant}", "4xx {{variant}}")], "percentunit"),
            _panel("Requests by status code", _rate(requests, "variant, code", **svc), "{{variant}} {{code}}", "reqps"),
        ]},
        {"title": "Batching", "panels": [
            _panel("Mean batch size by variant", _mean("specd_service_batch_size", "variant", **svc), "{{variant}}"),
            _panel("p90 batch size by variant", _quantile(0.9, "specd_service_batch_size", "variant", **svc), "{{variant}}"),
        ]},
        {"title": "A/B comparison", "panels": [
            _instant_table("Variants side by side", [
                (per_variant, "requests/s"),
                (_quantile(0.99, latency, "variant", **svc), "p99 latency (s)"),
                (error_ratio, "error ratio"),
                (_mean("specd_service_prediction", "variant", **svc), "mean prediction"),
            ], width=24),
            _panel("Mean prediction by variant", _mean("specd_service_prediction", "variant", **svc), "{{variant}}"),
            _panel("Feedback per second by variant", f"{_rate('specd_service_feedback_total', 'variant', **svc)} or {zero}", "{{variant}}", "reqps"),
            _panel("Prediction log records dropped", f"{_rate('specd_service_prediction_log_dropped_total', **svc)} or ({total} * 0)", "dropped/s", "short"),
        ]},
    ]
    if data.get("features_from"):  # serving by entity key: the online store's part of the latency
        rows.append(_online_row(svc, f"({total} * 0)"))
    resource = f"service/{name}"
    alerts = [
        _alert(f"SpecdService{_camel(name)}Down", f'up{{job="{SERVICES_JOB}",specd_service="{name}"}} == 0',
               f"service {name} is not answering /metrics", "2m", "critical", resource,
               f"Prometheus cannot scrape service {name}; the daemon restarts a dead bentoml serve with backoff.", "service-down"),
        _alert(f"SpecdService{_camel(name)}LatencySLO", f"{_quantile(0.99, latency, window=ALERT_WINDOW, **svc)} > {p99_slo_s}",
               f"service {name}: p99 latency above its SLO of {p99_slo_s * 1000:g} ms", "10m", "warning", resource,
               f"The 99th percentile of /predict latency of service {name} has been above {p99_slo_s * 1000:g} ms for 10 minutes.",
               "latency-slo"),
        *burn_rate_alerts(name, requests, max_error_rate, resource, **svc),
    ]
    annotations = [
        _annotation("Weight changes", f"changes({_sel('specd_service_variant_weight', **svc)}[2m]) > 0",
                    "traffic split changed: {{variant}}", "orange"),
        _annotation("Deploys", _new_series("specd_applied_revision_info"), "specd applied {{revision}}", "blue"),
    ]
    return {
        "title": f"Service {name}",
        "description": f"Live traffic of service {name} (model {data.get('model')}; variants {variants}).",
        "tags": ["specd", "service"],
        "rows": rows,
        "alerts": alerts,
        "annotations": annotations,
        "generated_for": resource,
    }


def model_dashboard(name: str, data: dict[str, Any]) -> dict[str, Any]:
    mod = {"model": name}
    fairness = f'specd_model_candidate_metric{{model="{name}",metric=~".*(parity|opportunity|fairness).*"}}'
    rows = [
        {"title": "Candidates", "panels": [
            _instant_table("Candidate metrics (held-out)", [(_sel("specd_model_candidate_metric", **mod), "{{candidate}} {{metric}}")], width=16),
            _instant_table("Champion", [(_sel("specd_model_champion_info", **mod), "{{candidate}} {{version}}")], width=8),
            _panel("Candidate metrics over time", _sel("specd_model_candidate_metric", **mod), "{{candidate}} {{metric}}"),
            _panel("Training duration by candidate", _sel("specd_model_training_duration_seconds", **mod), "{{candidate}}", "s"),
        ]},
        {"title": "Promotion", "panels": [
            _panel("Promotion decisions (cumulative)", f"sum by (decision) ({_sel('specd_model_promotions_total', **mod)})", "{{decision}}"),
            _panel("Champion history", _sel("specd_model_champion_info", **mod), "{{candidate}} {{version}}", type="stat"),
        ]},
        {"title": "Fairness", "panels": [
            _panel("Fairness gaps by candidate", fairness, "{{candidate}} {{metric}}", width=24),
        ]},
    ]
    if data.get("task") == "binary":  # the held-out curves and calibration error exist for binary classifiers
        ece = f'specd_model_candidate_metric{{model="{name}",metric=~"ece|ece_uncalibrated"}}'
        rows.append({"title": "Quality curves", "panels": [
            _panel("Expected calibration error by candidate", ece, "{{candidate}} {{metric}}", type="bargauge", width=8),
            _instant_table("ROC curve (TPR at FPR)", [(_sel("specd_model_curve", curve="roc", **mod), "{{candidate}} fpr {{x}}")], width=8),
            _instant_table("Precision-recall curve (precision at recall)", [(_sel("specd_model_curve", curve="pr", **mod),
                                                                             "{{candidate}} recall {{x}}")], width=8),
            _panel("Calibration curve (observed frequency at predicted probability)", _sel("specd_model_curve", curve="calibration", **mod),
                   "{{candidate}} p={{x}}", type="bargauge", unit="percentunit", width=24),
        ]})
    alerts = []
    if data.get("monitoring") is not None:  # only a monitored model has drift figures to show
        rows.append({"title": "Drift", "panels": [
            _multi("Drift share (monitored features drifted)", [
                (_sel("specd_model_drift_share", **mod), "drift share"),
                (_sel("specd_model_drift_share_threshold", **mod), "threshold"),
            ], "percentunit", width=12),
            _panel("Feature drift scores", _sel("specd_model_feature_drift", **mod), "{{feature}}", width=12),
            _panel("Prediction drift", _sel("specd_model_prediction_drift", **mod), "prediction", width=12),
            _panel("Dataset drift (1 = drifted)", _sel("specd_model_drift_detected", **mod), "drifted", type="stat", width=6),
            _panel("Logged predictions in the drift window", _sel("specd_model_drift_window_rows", **mod), "rows", type="stat", width=6),
        ]})
        share, threshold = _sel("specd_model_drift_share", **mod), _sel("specd_model_drift_share_threshold", **mod)
        alerts.append(
            _alert(f"SpecdModel{_camel(name)}Drift", f"max({share}) - max({threshold}) >= 0",  # signal: how far above the threshold
                   f"production traffic of model {name} drifted from its training data", "15m", "warning", f"model/{name}",
                   f"the share of drifted monitored features of model {name} reached monitoring.drift_share (specd drift {name} names them); "
                   "with retrain: {on: drift} (or monitoring.retrain_on_drift) the daemon plans a retrain", "model-drift"))
    return {
        "title": f"Model {name}",
        "description": f"A/B candidates of model {name}: held-out metrics, promotions, fairness, quality curves, drift.",
        "tags": ["specd", "model"],
        "rows": rows,
        "alerts": alerts,
        "annotations": [
            _annotation("Champion swaps", _new_series(_sel("specd_model_champion_info", **mod)), "champion is now {{candidate}}", "green"),
            _annotation("Promotion decisions", f"changes({_sel('specd_model_promotions_total', **mod)}[2m]) > 0", "promotion: {{decision}}", "purple"),
        ],
        "generated_for": f"model/{name}",
    }


def table_dashboard(name: str, data: dict[str, Any]) -> dict[str, Any]:
    tab = {"table": name}
    written = _sel("specd_table_rows_written_total", **tab)
    # Row counters appear with a table's first non-zero count; the version gauge exists after any build.
    zero = f"(sum({_sel('specd_table_version', **tab)}) * 0)"

    def total(counter: str) -> str:
        return f"(sum({_sel(counter, **tab)}) or {zero})"

    failures = f"sum by (check) (increase({_sel('specd_table_quality_failures_total', **tab)}[1h]))"
    age = f"time() - {_sel('specd_table_last_commit_timestamp_seconds', **tab)}"
    rows = [
        {"title": "Freshness", "panels": [
            _panel("Time since last commit", age, "age", "s", type="stat", width=8),
            _panel("Delta version", _sel("specd_table_version", **tab), "version", type="stat", width=8),
            _panel("Rows written in the last hour", f"sum(increase({written}[1h])) or {zero}", "rows", type="stat", width=8),
        ]},
        {"title": "Rows", "panels": [
            _multi("Rows per second", [
                (f"sum(rate({_sel('specd_table_rows_read_total', **tab)}[{WINDOW}])) or {zero}", "read"),
                (f"sum(rate({written}[{WINDOW}])) or {zero}", "written"),
            ], "rowsps"),
            _multi("Rows removed (cumulative)", [
                (total("specd_table_rows_deduplicated_total"), "deduplicated"),
                (total("specd_table_rows_filtered_total"), "filtered"),
            ]),
        ]},
        {"title": "Quality", "panels": [
            _panel("Quality failures by check (1h)", f"{failures} or {zero}", "{{check}}"),
            _multi("Quarantine", [
                (total("specd_table_rows_quarantined_total"), "quarantined rows (cumulative)"),
                (f"{total('specd_table_rows_quarantined_total')} / clamp_min({total('specd_table_rows_read_total')}, 1)", "share of rows read"),
            ]),
        ]},
    ]
    resource = f"table/{name}"
    alerts = [
        _alert(f"SpecdTable{_camel(name)}QualityFailed", f"(sum(increase({_sel('specd_table_quality_failures_total', **tab)}[15m])) or {zero}) > 0",
               f"table {name}: quality checks failed", "0m", "warning", resource,
               f"A build of table {name} failed or quarantined quality checks in the last 15 minutes; `specd status` names the check.",
               "table-quality"),
    ]
    max_age = stale_after_seconds(data)
    if max_age is not None:
        alerts.append(_alert(f"SpecdTable{_camel(name)}Stale", f"{age} > {max_age:g}",
                             f"table {name}: no commit for more than {max_age:g} s", "5m", "warning", resource,
                             f"Table {name} has had no new Delta version for longer than its freshness bound or twice its schedule.",
                             "table-stale"))
    return {
        "title": f"Table {name}",
        "description": f"Delta table {name} ({data.get('layer', 'other')} layer): freshness, rows, quality, quarantine.",
        "tags": ["specd", "table"],
        "rows": rows,
        "alerts": alerts,
        "annotations": [_annotation("Builds", f"changes({_sel('specd_table_version', **tab)}[2m]) > 0", "new Delta version", "blue")],
        "generated_for": resource,
    }


def stale_after_seconds(data: dict[str, Any]) -> float | None:
    """When a table counts as stale: its freshness max_age, else twice its refresh schedule's period."""
    quality = data.get("quality") or {}
    freshness = quality.get("freshness") if isinstance(quality, dict) else None
    if freshness and freshness.get("max_age"):
        from daemon.schema.table_transforms import duration_seconds

        return float(duration_seconds(freshness["max_age"]))
    schedule = data.get("schedule")
    return 2 * _cron_period_s(schedule) if schedule else None


@lru_cache(maxsize=1024)
def _cron_period_s(schedule: str) -> float:
    from croniter import croniter  # light; only for scheduled tables

    it = croniter(schedule, 0)
    first, second = it.get_next(float), it.get_next(float)
    return second - first


def platform_dashboard(env: Any, services: list[tuple[str, str, int]]) -> dict[str, Any]:
    prom = env.prometheus
    reconcile = "specd_reconcile_duration_seconds"
    rows = [
        {"title": "Sync", "panels": [
            _panel("In sync with Git", "specd_in_sync", "in sync", type="stat", width=6),
            _panel("Since last successful sync", "time() - specd_last_successful_sync_timestamp_seconds", "age", "s", type="stat", width=6),
            _instant_table("Desired vs applied revision", [("specd_desired_revision_info", "desired {{revision}}"), ("specd_applied_revision_info", "applied {{revision}}")], width=12),
            _panel("Rejected commits (1h)", "sum(increase(specd_rejected_commits_total[1h]))", "rejected", type="stat", width=6),
            _panel("Resources by sync and health", "sum by (kind, sync, health) (specd_resources)", "{{kind}} {{sync}} {{health}}", width=18),
        ]},
        {"title": "Resources", "panels": [
            _instant_table("Sync and health of every resource", [
                ("specd_resource_synced", "synced {{kind}}/{{name}}"),
                ("specd_resource_healthy", "healthy {{kind}}/{{name}}"),
            ], width=24),
        ]},
        {"title": "Reconcile", "panels": [
            _multi("Reconcile duration", [(_quantile(q, reconcile), label) for q, label in QUANTILES], "s"),
            _panel("Reconcile runs by result", _rate("specd_reconcile_runs_total", "result"), "{{result}}", "ops"),
            _panel("Actions by kind, op and result (1h)", "sum by (kind, op, result) (increase(specd_actions_total[1h]))", "{{kind}} {{op}} {{result}}"),
            _panel("p90 action duration by kind", _quantile(0.9, "specd_action_duration_seconds", "kind"), "{{kind}}", "s"),
        ]},
        {"title": "Scrape targets", "panels": [
            _instant_table("Targets up", [(f'up{{job=~"{DAEMON_JOB}|{SERVICES_JOB}"}}', "{{job}} {{instance}}")], width=24),
        ]},
    ]
    alerts = [
        _alert("SpecdDaemonDown", f'up{{job="{DAEMON_JOB}"}} == 0', "the specd daemon is not answering /metrics", "2m", "critical", "platform",
               "Prometheus cannot scrape the daemon: nothing is being reconciled. Check the daemon process and its log.", "daemon-down"),
        _alert("SpecdOutOfSync", "specd_in_sync == 0", f"specd has been out of sync with Git for {prom.out_of_sync_for}",
               prom.out_of_sync_for, "warning", "platform",
               "The applied revision differs from the desired one, or a resource is not synced: `specd status` says which.", "out-of-sync"),
        _alert("SpecdSyncStale", f"time() - specd_last_successful_sync_timestamp_seconds > {prom.sync_stale_after_s:g}",
               f"no successful sync for more than {prom.sync_stale_after_s:g} s", "5m", "warning", "platform",
               "No reconcile cycle has succeeded for a long time: the Git source may be unreachable or every cycle fails.", "sync-stale"),
        _alert("SpecdResourceUnhealthy", "specd_resource_healthy == 0", "a resource managed by specd is not healthy",
               "10m", "warning", "platform", "{{ $labels.kind }}/{{ $labels.name }} is not healthy: `specd status` gives the reason.",
               "resource-unhealthy"),
        _alert("SpecdCommitRejected", "sum(increase(specd_rejected_commits_total[15m])) > 0",
               "a commit was rejected as invalid; nothing of it was applied", "0m", "warning", "platform",
               "`specd validate` on the rejected revision lists every error with file:line; the last valid revision keeps running.",
               "commit-rejected"),
    ]
    scrape = [{"job": DAEMON_JOB, "targets": [f"{env.daemon.metrics_host}:{env.daemon.metrics_port}"]}]
    for name, host, port in services:
        scrape.append({"job": SERVICES_JOB, "targets": [f"{host}:{port}"], "labels": {"specd_service": name}})
    return {
        "title": "specd platform",
        "description": f"The specd control plane in environment {env.name}: sync, health, reconciles.",
        "tags": ["specd", "platform"],
        "rows": rows,
        "alerts": alerts,
        "annotations": [_annotation("Deploys", _new_series("specd_applied_revision_info"), "specd applied {{revision}}", "blue")],
        "scrape": scrape,
        "generated_for": "platform",
    }
