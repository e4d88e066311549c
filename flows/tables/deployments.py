"""specd's table deployments as the Prefect server holds them, read over its REST API (import-light).

`specd plan` must show whether a table's `schedule:` deployment exists and matches, without importing
prefect (tests/unit/test_light_paths.py), so the observer reads `POST /deployments/filter` and
`POST /flow_runs/filter` with the standard library. The same module names the deployments and their
entrypoint once, for the writer (`flows.tables.schedules`) and the reader alike.
"""

from __future__ import annotations

import json
import urllib.error
from dataclasses import dataclass, field
from typing import Any

REFRESH_FLOW = "specd-table-refresh"
MAINTAIN_FLOW = "specd-table-maintain"
PREFIX = "specd-table-"
TAGS = ("specd", "table")
# The module the runner imports the flow functions from. Never `__main__`: the runner process is started
# as `python -m flows.tables.schedules serve`, where `__name__` is "__main__" and a deployment pointing
# at "__main__.refresh_table" fails every run with MissingFlowError.
ENTRYPOINT_MODULE = "flows.tables.schedules"
FAILED_STATES = ("FAILED", "CRASHED")
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def refresh_name(table: str) -> str:
    return f"{PREFIX}{table}"


def maintain_name(table: str) -> str:
    return f"{PREFIX}maintain-{table}"


def table_of(deployment: str) -> str:
    name = deployment.removeprefix(PREFIX)
    return name.removeprefix("maintain-")


@dataclass(frozen=True)
class RunSummary:
    id: str
    state_type: str  # SCHEDULED, RUNNING, COMPLETED, FAILED, CRASHED, ...
    state_name: str  # "Late" is a SCHEDULED run past its start time
    expected_start: str | None
    message: str = ""


@dataclass(frozen=True)
class LiveDeployment:
    name: str
    id: str
    cron: str | None
    parameters: dict[str, Any] = field(default_factory=dict)
    last_final: RunSummary | None = None  # the most recent run that finished (completed, failed, ...)
    late: RunSummary | None = None  # a run that should have started and has not


def _post(api_url: str, path: str, body: dict[str, Any], timeout: float) -> Any:
    import urllib.request  # here: http.client and email cost every `specd plan` ~10 ms, and only a schedule reads

    request = urllib.request.Request(api_url.rstrip("/") + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def read_live(api_url: str, timeout: float = 2.0) -> dict[str, LiveDeployment] | None:
    """specd's table deployments with their latest runs; None when the server cannot be reached."""
    try:
        found = _post(api_url, "/deployments/filter", {"deployments": {"tags": {"all_": list(TAGS)}}}, timeout)
        found = [d for d in found if str(d.get("name", "")).startswith(PREFIX)]
        runs: list[dict[str, Any]] = []
        if found:
            body = {"deployments": {"id": {"any_": [d["id"] for d in found]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 200}
            runs = _post(api_url, "/flow_runs/filter", body, timeout)
    except (OSError, ValueError, urllib.error.URLError):
        return None
    by_deployment: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_deployment.setdefault(str(run.get("deployment_id")), []).append(run)
    out = {}
    for item in found:
        crons = [s.get("schedule", {}).get("cron") for s in item.get("schedules") or [] if s.get("active", True)]
        mine = by_deployment.get(str(item["id"]), [])
        final = next((r for r in mine if r.get("state_type") in FINAL_STATES), None)
        late = next((r for r in mine if r.get("state_type") == "SCHEDULED" and r.get("state_name") == "Late"), None)
        out[item["name"]] = LiveDeployment(item["name"], str(item["id"]), next((c for c in crons if c), None),
                                           dict(item.get("parameters") or {}), _summary(final), _summary(late))
    return out


def _summary(run: dict[str, Any] | None) -> RunSummary | None:
    if run is None:
        return None
    state = run.get("state") or {}
    return RunSummary(str(run.get("id")), str(run.get("state_type")), str(run.get("state_name")),
                      run.get("expected_start_time"), str(state.get("message") or ""))
