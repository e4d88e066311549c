"""The model spec's `monitoring:` block: drift of production traffic against the champion's training data.

Kept in its own small model (imported by daemon/schema/model.py) so the drift settings evolve without
touching the training sections. The reference is never written here: it is the training table at the
Delta version the current release was trained on (its lineage), so it cannot go stale against the model.

Light by rule: pydantic + daemon.schema only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from daemon.schema.base import SpecModel

NumericMethod = Literal["wasserstein", "ks", "psi"]
CategoricalMethod = Literal["jensenshannon", "chisquare", "psi"]

# Default per-column thresholds, as Evidently uses them: a score above (distance) or a p-value below (test).
DEFAULT_THRESHOLDS: dict[str, float] = {"wasserstein": 0.1, "ks": 0.05, "psi": 0.1, "jensenshannon": 0.1, "chisquare": 0.05}
P_VALUE_METHODS = frozenset({"ks", "chisquare"})


class WindowSpec(SpecModel):
    last: int = Field(default=10_000, ge=100, le=5_000_000)  # the last N logged predictions of this model
    hours: float | None = Field(default=None, gt=0)  # ... and at most this old (None: no time bound)
    sample: int = Field(default=20_000, ge=100, le=1_000_000)  # rows drawn from the window and the reference
    min_rows: int = Field(default=200, ge=10)  # fewer current rows: no verdict (never a retrain on noise)


class MonitoringSpec(SpecModel):
    features: list[str] = Field(default_factory=list)  # empty: the model's features
    service: str | None = None  # whose prediction log to read (default: every local service log, rows of this model)
    window: WindowSpec = Field(default_factory=WindowSpec)
    numeric: NumericMethod = "wasserstein"
    categorical: CategoricalMethod = "jensenshannon"
    threshold: float | None = Field(default=None, gt=0)  # per-column drift threshold (default: the method's)
    drift_share: float = Field(default=0.5, gt=0, le=1)  # dataset drift: share of drifted columns ≥ this
    interval_s: int = Field(default=3600, ge=1)  # at most one check per interval (result cached under the home)
    retrain_on_drift: bool = False  # dataset drift plans an UPDATE that retrains the model

    @model_validator(mode="after")
    def _p_value_threshold(self) -> MonitoringSpec:
        if self.threshold is not None and self.threshold >= 1 and (self.numeric in P_VALUE_METHODS or self.categorical in P_VALUE_METHODS):
            raise ValueError("threshold is a p-value for ks/chisquare and must be < 1")
        return self

    def column_threshold(self, method: str) -> float:
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLDS[method]
