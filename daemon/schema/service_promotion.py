"""A service's `promotion.online` rule: when live feedback says a challenger beats the champion.

Kept apart from service.py because it is read by a different loop: the daemon's proposal tick
(daemon/runtime/proposals.py) turns a won A/B test into a Git commit instead of flipping traffic.
The statistics are bentos/ab_report.py's (one DuckDB query over the logs); this model only declares
the thresholds a verdict needs.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from daemon.schema.base import ResourceName, SpecModel

_WINDOW = re.compile(r"^(\d+)([smhdw])$")


class OnlinePromotionSpec(SpecModel):
    # What ab_report computes from feedback: accuracy for classifiers, mean absolute error for regression.
    # A rule whose metric does not match the log gives no verdict (and says so).
    metric: Literal["accuracy", "mae"] = "accuracy"
    champion: ResourceName = "champion"  # the variant the challengers are compared against
    min_samples: int = Field(default=1000, ge=1)  # scored rows (with feedback) per variant before any verdict
    alpha: float = Field(default=0.05, gt=0, lt=0.5)  # significance level (Bonferroni-split across challengers)
    tau: float | None = Field(default=None, gt=0)  # mSPRT mixing scale; None: ab_report's default
    window: str = "14d"  # how far back the logs are read: 30m, 12h, 14d, 2w
    bucket: str = "1 hour"  # time between looks of the sequential test
    # Guardrails on the winner, over the same window: its logged p99 latency must stay under this (None: the
    # service's slo.latency_p99_ms), and its share of failed requests (server errors, which the service logs
    # as prediction rows with no prediction) at or under max_error_rate (None: the service's slo.error_rate).
    max_latency_p99_ms: float | None = Field(default=None, gt=0)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    check_every_minutes: float = Field(default=15.0, gt=0)  # how often the daemon evaluates the rule

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if not _WINDOW.match(value):
            raise ValueError(f"expected a duration like 30m, 12h, 14d or 2w, got {value!r}")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        amount, _, unit = value.strip().partition(" ")
        if not amount.isdigit() or int(amount) <= 0 or unit.strip().rstrip("s") not in ("second", "minute", "hour", "day", "week"):
            raise ValueError(f"expected '<N> minutes|hours|days|weeks', got {value!r}")
        return value


class ServicePromotionSpec(SpecModel):
    online: OnlinePromotionSpec | None = None
