"""Generated dashboards: one per table, model and service, plus the platform — as plain dashboard specs.

Why specs and not Grafana JSON here: derive runs inside `compose` for every `validate` and `plan`, so it
must be pure and light (no builder import). The generated rows, PromQL queries, alert rules and scrape
targets are ordinary `DashboardSpec` data: plan checks every query, the fingerprint covers the content,
and a PR sees "panel p99 latency: ... → ..." like any other property change.

Every query uses only the metric names of `daemon/CONTRACTS.md`; a test checks that statically, and the
end-to-end test runs each one against a real Prometheus. Counters that exist only after their first
event (errors, quality failures, dropped logs) use `or ... * 0` so panels show 0, not "No data".
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from dashboards import panels

if TYPE_CHECKING:
    from daemon.core.documents import Composed, SpecDoc

PLATFORM_NAME = "platform"
# Generated specs validated before, by their content: validation (PromQL parsing included) is most of
# derive's cost, and a daemon cycle or a warm plan regenerates the same dashboards every time.
_VALIDATED: dict[str, tuple[Any, dict[str, Any]]] = {}
DERIVED_PREFIX = {"table": "table-", "model": "model-", "service": "service-"}


def derived_name(kind: str, name: str) -> str:
    return f"{DERIVED_PREFIX[kind]}{name}"


def derive_all(composed: Composed) -> list[SpecDoc]:
    from daemon.core.documents import SpecDoc
    from daemon.schema.dashboard import DashboardSpec
    from daemon.shared.errors import SpecErrors, SpecIssue

    env = composed.env
    generated: list[tuple[str, str, dict[str, Any]]] = []  # (name, path, spec data)
    services: list[tuple[str, str, int]] = []
    for doc in composed.docs:
        if doc.kind == "service":
            host, port = service_address(doc.data, doc.name, env)
            services.append((doc.name, host, port))
            generated.append((derived_name("service", doc.name), doc.path, panels.service_dashboard(doc.name, doc.data)))
        elif doc.kind == "model":
            generated.append((derived_name("model", doc.name), doc.path, panels.model_dashboard(doc.name, doc.data)))
        elif doc.kind == "table":
            generated.append((derived_name("table", doc.name), doc.path, panels.table_dashboard(doc.name, doc.data)))
    platform = panels.platform_dashboard(env, sorted(services))
    generated.append((PLATFORM_NAME, f"environments/{env.name}.yaml", platform))

    docs: list[SpecDoc] = []
    issues: list[SpecIssue] = []
    for name, path, data in generated:
        key = json.dumps(data, sort_keys=True, default=str)
        hit = _VALIDATED.get(key)
        if hit is None:
            try:
                spec = DashboardSpec.model_validate(data)
            except ValidationError as exc:  # a generator bug or an odd name: reject with the source file
                for error in exc.errors(include_url=False):
                    field = ".".join(str(p) for p in error["loc"])
                    issues.append(SpecIssue(path, 0, f"generated dashboard {name}: {field}", error["msg"]))
                continue
            if len(_VALIDATED) > 20_000:
                _VALIDATED.clear()
            hit = _VALIDATED[key] = (spec, spec.model_dump(mode="json", by_alias=True))
        docs.append(SpecDoc("dashboard", name, path, hit[0], hit[1]))
    if issues:
        raise SpecErrors(issues)
    return docs


def service_address(data: dict[str, Any], name: str, env: Any) -> tuple[str, int]:
    """Where a service's /metrics is scraped: its spec's host/port or the environment's defaults."""
    host = data.get("host") or env.services.host
    port = data.get("port")
    if port is None:
        from daemon.schema.service import default_port

        port = default_port(name, env.services.port_base)
    return host, int(port)
