"""Drift of a model's production traffic, checked from the model adapter's observe at most every interval.

Why in observe and not a separate Prefect deployment: observe already runs on every reconcile cycle (and
in `specd plan`), and the verdict must reach the plan as an `Observed.drift` reason so that a drifted
model is planned as an UPDATE and retrained through the normal candidate/promotion path. The check is
bounded (a cached reference profile + a DuckDB-sampled window) and its result is cached under the state
home (`<home>/drift/<model>/last.json`), so a plan re-reads the cached verdict until `monitoring.interval_s`
has passed. Every check sets the drift gauges of the daemon's `/metrics`.

In the daemon (Prefect on), a check that is due runs through `ctx.run_monitor` as a `specd-drift-check`
Prefect flow run with the report as its markdown artifact (daemon/runtime/prefect_monitor.py); `specd
plan`, `validate` and `--no-prefect` leave it None and run the check inline, importing no Prefect.

A failing check (no log yet, unreadable table) never fails observe: the model keeps its state and the
note says why.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from daemon.adapters.base import AdapterContext
from flows.monitoring.check import (
    DriftReport,
    DriftSettings,
    cached_reference,
    check,
    current_sample,
    kinds_of,
    write_json,
)
from flows.training.registry import Release


def drift_dir(home: Path) -> Path:
    return Path(home) / "drift"


def settings_for(spec: Any) -> DriftSettings:
    mon = spec.monitoring
    return DriftSettings(
        features=tuple(mon.features or spec.data.features), target=spec.data.target,
        numeric=mon.numeric, categorical=mon.categorical,
        numeric_threshold=mon.column_threshold(mon.numeric), categorical_threshold=mon.column_threshold(mon.categorical),
        drift_share=mon.drift_share, last=mon.window.last, hours=mon.window.hours, sample=mon.window.sample,
        min_rows=mon.window.min_rows,
    )


def prediction_logs(ctx: AdapterContext, service: str | None) -> list[str]:
    """The prediction-log Delta URIs to read: the named service's, else every service's (local or object store)."""
    from daemon.shared import storage_uri

    base = ctx.storage_root.rstrip("/")
    if service:
        return [f"{base}/predictions/{service}"]
    root = storage_uri.join(base, "predictions")
    options = storage_uri.client_options(ctx.env.storage.storage_options, ctx.env.tls, ctx.home)
    return [storage_uri.join(root, name) for name in storage_uri.list_dirs(root, options)
            if storage_uri.list_files(storage_uri.join(root, name, "_delta_log"), options)]


def run_check(ctx: AdapterContext, name: str, spec: Any, release: Release) -> DriftReport:
    """Compute a fresh report (reference profile from cache) and store it as the last result."""
    from bentos.ab_report import open_logs
    from daemon.adapters.models.check import source_table

    settings = settings_for(spec)
    lineage = {k: release.data.get(k) for k in ("table", "uri", "delta_version")}
    uri = release.data.get("uri") or source_table(ctx, spec.data.table)[0]
    _, options = source_table(ctx, spec.data.table)
    reference = cached_reference(drift_dir(ctx.home), name, release.fingerprint, uri, release.data.get("delta_version"), settings, options)
    merged: dict[str, list[Any]] = {}
    for log_uri in prediction_logs(ctx, spec.monitoring.service):
        predictions, _ = open_logs(log_uri, log_uri + ".unused", options)
        sample = current_sample(predictions, name, reference["features"], settings, kinds=kinds_of(reference), since=release.created_at or None)
        for key, values in sample.items():
            merged.setdefault(key, []).extend(values)
    report = check(name, reference, merged, settings, lineage)
    write_json(drift_dir(ctx.home) / name / "last.json", {"fingerprint": release.fingerprint, "release_created_at": release.created_at,
                                                          "report": report.to_json()})
    record(report)
    return report


def last_report(home: Path, name: str) -> tuple[dict[str, Any], DriftReport] | None:
    try:
        data = json.loads((drift_dir(home) / name / "last.json").read_text())
        return data, DriftReport.from_json(data["report"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def observe_drift(ctx: AdapterContext, name: str, spec: Any, release: Release, *, now: float | None = None) -> DriftReport | None:
    """The cached verdict while it is younger than the interval and about this release; else a fresh check."""
    now = time.time() if now is None else now
    cached = last_report(ctx.home, name)
    if cached is not None:
        meta, report = cached
        fresh = now - report.checked_at < spec.monitoring.interval_s
        if fresh and meta.get("fingerprint") == release.fingerprint and meta.get("release_created_at") == release.created_at:
            record(report)
            return report
    if ctx.run_monitor is None:
        return run_check(ctx, name, spec, release)
    labels = {"model": name, "env": ctx.env.name, "revision": ctx.revision[:12]}
    return ctx.run_monitor(CHECK_FLOW, labels, lambda: run_check(ctx, name, spec, release), report_markdown)


CHECK_FLOW = "specd-drift-check"  # the Prefect flow (run) name of a due check in the daemon


def report_markdown(report: DriftReport) -> str:
    """The check as a Prefect artifact: verdict, share, window, reference lineage, one row per feature."""
    ref = report.reference or {}
    verdict = "dataset drift" if report.dataset_drift else ("no drift" if report.enough_rows else "no verdict (too few rows)")
    lines = [
        f"# Drift of `{report.model}`: {verdict}", "",
        f"- drift share: **{report.share:.3f}** (threshold {report.share_threshold:g}); "
        f"drifted: {', '.join(c.column for c in report.drifted()) or 'none'}",
        f"- window: {report.current_rows} logged rows",
        f"- reference: `{ref.get('table') or ref.get('uri')}`@{ref.get('delta_version')}",
        f"- checked in {report.seconds:.2f} s" + (f"; {report.note}" if report.note else ""), "",
        "| feature | kind | method | score | threshold | drifted |", "|---|---|---|---|---|---|",
    ]
    columns = [*report.columns, *([report.prediction] if report.prediction else [])]
    for c in columns:
        label = f"{c.column} (prediction)" if c is report.prediction else c.column
        lines.append(f"| `{label}` | {c.kind} | {c.method} | {c.score:.4g} | {c.threshold:g} | {'**yes**' if c.drifted else 'no'} |")
    return "\n".join(lines) + "\n"


def record(report: DriftReport) -> None:
    from daemon.adapters.models import metrics as models_metrics

    models_metrics.record_drift(report)
