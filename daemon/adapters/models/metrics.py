"""Prometheus metrics of the model kind (names fixed in daemon/CONTRACTS.md), in the default registry.

Set by the model adapter inside the daemon process after each training, promotion or restore, so the
daemon's `/metrics` endpoint exposes them; dashboards and alerts are generated from these names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge

CANDIDATE_METRIC = Gauge("specd_model_candidate_metric", "Holdout metric of a model candidate", ["model", "candidate", "metric"])
CHAMPION_INFO = Gauge("specd_model_champion_info", "1 for the current champion of a model", ["model", "candidate", "version"])
PROMOTIONS = Counter("specd_model_promotions_total", "Promotion decisions taken, by outcome", ["model", "decision"])
TRAINING_DURATION = Gauge("specd_model_training_duration_seconds", "Wall time of the last training of a candidate", ["model", "candidate"])


def record_candidate(model: str, candidate: str, metrics: Mapping[str, Any] | None, seconds: float | None) -> None:
    for name, value in (metrics or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool) and name != "rows" and not math.isnan(float(value)):
            CANDIDATE_METRIC.labels(model, candidate, name).set(float(value))
    for attribute, values in ((metrics or {}).get("fairness") or {}).items():
        for name, value in values.items():
            CANDIDATE_METRIC.labels(model, candidate, f"{name}:{attribute}").set(float(value))
    if seconds is not None:
        TRAINING_DURATION.labels(model, candidate).set(seconds)
    record_curves(model, candidate, metrics or {})


# The held-out ROC, precision-recall and calibration curves of each candidate (flows/training/metrics.py keeps at
# most 25 points each), one series per point: y by curve and x, so the model dashboard can chart them next to ECE.
CURVE = Gauge("specd_model_curve", "Held-out curve point of a candidate: y at x (roc: TPR at FPR, pr: precision at recall, "
              "calibration: observed frequency at mean predicted probability)", ["model", "candidate", "curve", "x"])
CURVE_KEYS = {"roc_curve": "roc", "pr_curve": "pr", "calibration_curve": "calibration"}


def record_curves(model: str, candidate: str, metrics: Mapping[str, Any]) -> None:
    """Replace the candidate's curve series with the points of `metrics` (none: the candidate has no curves)."""
    for labels in list(CURVE._metrics):  # (model, candidate, curve, x)
        if labels[:2] == (model, candidate):
            CURVE.remove(*labels)
    for key, curve in CURVE_KEYS.items():
        points: dict[str, float] = {}
        for point in metrics.get(key) or []:
            if len(point) >= 2 and all(isinstance(v, int | float) and math.isfinite(v) for v in point[:2]):
                points[f"{float(point[0]):.3f}"] = float(point[1])  # the last y of an x wins (a step of the ROC)
        for x, y in points.items():
            CURVE.labels(model, candidate, curve, x).set(y)


def record_champion(model: str, tag: str | None) -> None:
    """Exactly one champion series per model: clear the model's old ones first."""
    for labels in list(CHAMPION_INFO._metrics):  # (model, candidate, version)
        if labels[0] == model:
            CHAMPION_INFO.remove(*labels)
    if tag:
        version = tag.split(":", 1)[1]
        CHAMPION_INFO.labels(model, version.rsplit("-", 1)[0], version).set(1)


def record_promotion(model: str, decision: str) -> None:
    PROMOTIONS.labels(model, decision).inc()


# Drift of production traffic (daemon/adapters/models/drift.py): set by every drift check the daemon runs.
DRIFT_SHARE = Gauge("specd_model_drift_share", "Share of monitored features that drifted from the training data", ["model"])
FEATURE_DRIFT = Gauge("specd_model_feature_drift", "Drift score of one feature (a distance, or a p-value for ks/chisquare)", ["model", "feature"])
PREDICTION_DRIFT = Gauge("specd_model_prediction_drift", "Drift score of the predictions against the training target", ["model"])
DRIFT_DETECTED = Gauge("specd_model_drift_detected", "1 when the drift share crossed monitoring.drift_share", ["model"])
DRIFT_THRESHOLD = Gauge("specd_model_drift_share_threshold", "monitoring.drift_share of a model", ["model"])
DRIFT_ROWS = Gauge("specd_model_drift_window_rows", "Logged predictions in the last drift check's window", ["model"])


def record_drift(report: Any) -> None:
    """One drift check's gauges; a feature no longer monitored loses its series."""
    model = report.model
    DRIFT_ROWS.labels(model).set(report.current_rows)
    DRIFT_THRESHOLD.labels(model).set(report.share_threshold)
    if not report.enough_rows:
        return
    DRIFT_SHARE.labels(model).set(report.share)
    DRIFT_DETECTED.labels(model).set(1 if report.dataset_drift else 0)
    if report.prediction is not None and not math.isnan(report.prediction.score):
        PREDICTION_DRIFT.labels(model).set(report.prediction.score)
    current = {c.column for c in report.columns}
    for labels in list(FEATURE_DRIFT._metrics):
        if labels[0] == model and labels[1] not in current:
            FEATURE_DRIFT.remove(*labels)
    for column in report.columns:
        if not math.isnan(column.score):
            FEATURE_DRIFT.labels(model, column.column).set(column.score)
