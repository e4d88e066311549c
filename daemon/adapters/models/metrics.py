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
