"""The `retrain:` block of a model spec: when new data in the source table retrains the model.

A model's fingerprint covers its own spec, not its table's: new rows never change it. Whether data that
moved on since the release was trained should retrain it is this policy's call, decided at plan time
(`daemon.adapters.models.retrain.decide`) and shown in the plan like any other change:

- `on: new_data` (the default): retrain when the table's data changed since the data the release was
  trained on, once at least `min_new_rows` rows (or `min_fraction` of the trained rows) were added and
  `min_interval` has passed since the last training;
- `on: schedule`: retrain on the `cron` schedule (when a fire time passed since the last training and the
  data changed);
- `on: drift`: retrain when the model's `monitoring:` check finds the production traffic drifted beyond
  its thresholds (never on new rows alone: they only show as "data ahead");
- `on: never`: never retrain on data; `table_version` pins the Delta version to train on.

When the policy holds back, `specd status` shows the model OutOfSync with "data ahead by N rows".
Light: pydantic only (croniter inside the cron validator).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from daemon.schema.base import SpecModel

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def duration_seconds(value: str | int | float) -> float:
    """'90s', '30m', '6h', '2d' or a number of seconds → seconds."""
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration must be ≥ 0")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration (e.g. 90s, 30m, 6h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


class RetrainSpec(SpecModel):
    on: Literal["new_data", "schedule", "drift", "never"] = "new_data"
    min_new_rows: int = Field(default=0, ge=0)  # on: new_data
    min_fraction: float = Field(default=0.0, ge=0.0)  # on: new_data, of the rows the release was trained on
    min_interval: str | int | float = 0  # on: new_data / schedule: at least this long between trainings
    cron: str | None = None  # on: schedule
    table_version: int | None = Field(default=None, ge=0)  # on: never: train on this Delta version

    @model_validator(mode="before")
    @classmethod
    def _yaml11_on(cls, data: object) -> object:
        """YAML 1.1 reads a bare `on:` key as the boolean True (GitHub Actions' old trap): take it as `on`."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    @field_validator("min_interval")
    @classmethod
    def _interval(cls, value: str | int | float) -> str | int | float:
        duration_seconds(value)
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RetrainSpec:
        if self.on == "schedule" and not self.cron:
            raise ValueError("retrain.on 'schedule' needs retrain.cron")
        if self.on != "schedule" and self.cron:
            raise ValueError(f"retrain.cron is only used with on: schedule (on is {self.on!r})")
        if self.on != "never" and self.table_version is not None:
            raise ValueError("retrain.table_version pins the data: only with on: never")
        if self.on != "new_data" and (self.min_new_rows or self.min_fraction):
            raise ValueError("retrain.min_new_rows / min_fraction are thresholds of on: new_data")
        return self

    @property
    def interval_s(self) -> float:
        return duration_seconds(self.min_interval)

    def describe(self) -> str:
        if self.on == "never":
            return "policy never" + (f", pinned to v{self.table_version}" if self.table_version is not None else "")
        if self.on == "schedule":
            return f"policy schedule {self.cron}"
        if self.on == "drift":
            return "policy drift"
        parts = []
        if self.min_new_rows:
            parts.append(f"≥ {self.min_new_rows}")
        if self.min_fraction:
            parts.append(f"≥ {self.min_fraction:g} of the rows")
        if self.interval_s:
            parts.append(f"every ≥ {self.min_interval}")
        return "policy new_data" + (" " + ", ".join(parts) if parts else "")
