"""Dashboard spec → Grafana dashboard JSON, built with the typed grafana-foundation-sdk.

Why the typed builder: a misspelt option is a Python error here, not a silently ignored JSON key in
Grafana. The SDK release is pinned to Grafana 11.6's schema (`schemaVersion` 41); `SCHEMA_VERSION` is
checked against what the builder emits so a different SDK release is noticed at once. Imported only by
the adapter's `apply` (and the benchmark): `validate` and `plan` never load the SDK.

The JSON carries specd's marker under `__specd` (resource key, fingerprint, git revision, prune policy):
file-provisioned dashboards are observed by reading that marker back.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, dashboard, gauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import StackingMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from daemon.schema.dashboard import DashboardSpec, PanelSpec, dashboard_uid
from dashboards.files import MARKER, content_hash

SCHEMA_VERSION = 41  # Grafana 11.6 (grafana-foundation-sdk 11.6.x)
DATASOURCE_VARIABLE = "datasource"
_PANEL_BUILDERS = {
    "timeseries": timeseries.Panel,
    "stat": stat.Panel,
    "gauge": gauge.Panel,
    "table": table.Panel,
    "bargauge": bargauge.Panel,
}


def _datasource(datasource_uid: str | None) -> DataSourceRef:
    return DataSourceRef(type_val="prometheus", uid=datasource_uid or f"${{{DATASOURCE_VARIABLE}}}")


def _panel(spec: PanelSpec, datasource: DataSourceRef) -> Any:
    builder = _PANEL_BUILDERS[spec.type]().title(spec.title).unit(spec.unit).span(spec.width).height(spec.height)
    builder = builder.datasource(datasource)
    if spec.description:
        builder = builder.description(spec.description)
    if spec.stack and spec.type == "timeseries":
        builder = builder.stacking(common.StackingConfig().mode(StackingMode.NORMAL))
    for index, query in enumerate(spec.all_queries()):
        target = prometheus.Dataquery().expr(query.expr).ref_id(chr(ord("A") + index % 26) + ("" if index < 26 else str(index)))
        target = target.datasource(datasource)
        if query.legend:
            target = target.legend_format(query.legend)
        target = target.instant() if query.instant else target.range()
        builder = builder.with_target(target)
    return builder


def build_dashboard(name: str, spec: DashboardSpec, datasource_uid: str | None = None) -> dict[str, Any]:
    """The Grafana JSON model of one dashboard resource (without specd's marker)."""
    datasource = _datasource(datasource_uid)
    board = (
        dashboard.Dashboard(spec.title)
        .uid(dashboard_uid(name))
        .tags(sorted(set(spec.tags) | {"specd"}))
        .refresh(spec.refresh)
        .time(spec.time_from, "now")
        .timezone("browser")
        .readonly()
    )
    if spec.description:
        board = board.description(spec.description)
    if datasource_uid is None:
        board = board.with_variable(dashboard.DatasourceVariable(DATASOURCE_VARIABLE).label("Prometheus").type("prometheus"))
    for panel in spec.panels:
        board = board.with_panel(_panel(panel, datasource))
    for row in spec.rows:
        board = board.with_row(dashboard.Row(row.title))
        for panel in row.panels:
            board = board.with_panel(_panel(panel, datasource))
    for note in spec.annotations:
        board = board.annotation(dashboard.AnnotationQuery().name(note.name).datasource(datasource).enable(True)
                                 .icon_color(note.color).expr(note.expr))
    model = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    titles = {note.name: note.title for note in spec.annotations}
    for entry in model.get("annotations", {}).get("list", []):
        if titles.get(entry.get("name")):
            entry["titleFormat"] = titles[entry["name"]]  # Prometheus annotation fields the SDK does not model
        if entry.get("name") in titles:
            entry["step"] = "60s"
    for panel_id, panel in enumerate(model.get("panels", []), start=1):
        panel["id"] = panel_id  # stable ids: Grafana links and panel edits refer to them
    if model.get("schemaVersion") != SCHEMA_VERSION:
        raise RuntimeError(
            f"grafana-foundation-sdk emits schemaVersion {model.get('schemaVersion')}, expected {SCHEMA_VERSION} (Grafana 11.6): pin the 11.6 release"
        )
    return model


def with_marker(model: dict[str, Any], key: str, fingerprint: str, revision: str, prune: bool | None, files: dict[str, str]) -> dict[str, Any]:
    """The model plus specd's marker: what was applied, and the hash of every file the resource owns."""
    marked = dict(model)
    marked[MARKER] = {
        "key": key,
        "fingerprint": fingerprint,
        "revision": revision,
        "prune": prune,
        "content": content_hash(model),
        "files": dict(sorted(files.items())),
    }
    return marked
