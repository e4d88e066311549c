"""Dashboard specs: Grafana dashboards and Prometheus alert rules, custom or generated from other specs.

Custom dashboards live in `specs/dashboards/*.yaml`; generated ones (one per table, model and service,
plus the platform) are derived by `dashboards.derive.derive_all` during compose (the kind's derive hook). Both are the same plain data — rows
of panels with PromQL queries, alert rules, scrape targets — so plan validates every query (file:line),
fingerprints the content and diffs it property by property; only the adapter turns it into Grafana JSON.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import Field, model_validator

from daemon.schema.base import Ref, SpecModel
from daemon.schema.promql import PromQL

PanelType = Literal["timeseries", "stat", "gauge", "table", "bargauge"]
_ALERT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
_TARGET = r"^[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$"
_RESOURCE_KEY = r"^[a-z]+/[a-z][a-z0-9_-]{0,62}$"
MAX_UID_LENGTH = 40  # Grafana's limit for dashboard and folder uids


class QuerySpec(SpecModel):
    expr: PromQL
    legend: str = ""
    instant: bool = False


class PanelSpec(SpecModel):
    title: str = Field(min_length=1)
    type: PanelType = "timeseries"
    description: str = ""
    unit: str = "short"  # a Grafana unit id: s, ms, percentunit, reqps, short, dateTimeFromNow, ...
    # Either one `expr` (+ `legend`) or a list of `queries`.
    expr: PromQL | None = None
    legend: str = ""
    queries: list[QuerySpec] = Field(default_factory=list)
    width: int = Field(default=12, ge=1, le=24)
    height: int = Field(default=8, ge=2, le=40)
    stack: bool = False

    @model_validator(mode="after")
    def _one_query_form(self) -> PanelSpec:
        if (self.expr is None) == (not self.queries):
            raise ValueError("give either 'expr' or a non-empty 'queries' list")
        return self

    def all_queries(self) -> list[QuerySpec]:
        return self.queries or [QuerySpec(expr=self.expr or "", legend=self.legend)]


class RowSpec(SpecModel):
    title: str = Field(min_length=1)
    panels: list[PanelSpec] = Field(min_length=1)


class AlertSpec(SpecModel):
    name: str
    expr: PromQL
    for_: str = Field(default="5m", alias="for", pattern=_DURATION)
    severity: Literal["info", "warning", "critical"] = "warning"
    summary: str = Field(min_length=1)
    description: str = ""
    # Where an on-call engineer reads what to do: absolute (https://…) or relative to env.prometheus.runbook_base_url.
    runbook_url: str = ""
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _prometheus_alert_name(self) -> AlertSpec:
        if not _ALERT_NAME.match(self.name):
            raise ValueError(f"alert name {self.name!r} must match [A-Za-z_][A-Za-z0-9_]*")
        return self


class AnnotationSpec(SpecModel):
    """A Grafana annotation query: a marker on every time series panel where `expr` returns a series."""

    name: str = Field(min_length=1)
    expr: PromQL
    title: str = ""  # Grafana title format, e.g. "specd applied {{revision}}"
    color: str = "blue"


class ScrapeTargetSpec(SpecModel):
    job: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    targets: list[str] = Field(min_length=1)
    metrics_path: str = "/metrics"
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _host_port(self) -> ScrapeTargetSpec:
        for target in self.targets:
            if not re.match(_TARGET, target):
                raise ValueError(f"scrape target {target!r} must be host:port")
        return self


class DashboardSpec(SpecModel):
    title: str = Field(min_length=1)
    description: str = ""
    owners: list[str] = Field(default_factory=list)  # people or teams whose approval a change needs
    tags: list[str] = Field(default_factory=list)
    refresh: str = Field(default="30s", pattern=_DURATION)
    time_from: str = "now-6h"
    panels: list[PanelSpec] = Field(default_factory=list)  # shown first, without a row
    rows: list[RowSpec] = Field(default_factory=list)
    alerts: list[AlertSpec] = Field(default_factory=list)
    annotations: list[AnnotationSpec] = Field(default_factory=list)
    # Resources this dashboard follows ("service/churn-api"): an unknown one is a spec error.
    resources: list[str] = Field(default_factory=list)
    # Set on generated dashboards: the resource ("service/churn-api") or "platform".
    generated_for: str | None = None
    scrape: list[ScrapeTargetSpec] = Field(default_factory=list)  # the platform dashboard carries the scrape config
    prune: bool | None = None

    @model_validator(mode="after")
    def _content(self) -> DashboardSpec:
        if not self.panels and not self.rows:
            raise ValueError("a dashboard needs 'panels' or 'rows'")
        for key in self.resources:
            if not re.match(_RESOURCE_KEY, key):
                raise ValueError(f"resources entry {key!r} must be kind/name, e.g. service/churn-api")
        names = [alert.name for alert in self.alerts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate alert names: {', '.join(duplicates)}")
        return self

    def references(self) -> list[Ref]:
        refs = [Ref(*key.split("/", 1), ("resources", i)) for i, key in enumerate(self.resources)]
        if self.generated_for and "/" in self.generated_for:
            kind, name = self.generated_for.split("/", 1)
            refs.append(Ref(kind, name, ("generated_for",)))
        return refs

    def all_panels(self) -> list[PanelSpec]:
        return list(self.panels) + [panel for row in self.rows for panel in row.panels]

    def all_exprs(self) -> list[str]:
        """Every PromQL expression: panel queries, then alert rules."""
        exprs = [query.expr for panel in self.all_panels() for query in panel.all_queries()]
        return exprs + [alert.expr for alert in self.alerts]


def dashboard_uid(name: str) -> str:
    """Stable Grafana uid for a dashboard resource: readable when short, hashed suffix when long."""
    uid = f"specd-{name}"
    if len(uid) <= MAX_UID_LENGTH:
        return uid
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{uid[: MAX_UID_LENGTH - 11]}-{digest}"


def folder_uid(folder: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", folder.lower()).strip("-") or "specd"
    if len(slug) <= MAX_UID_LENGTH:
        return slug
    return f"{slug[: MAX_UID_LENGTH - 11]}-{hashlib.sha256(folder.encode()).hexdigest()[:10]}"
