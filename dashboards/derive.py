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

import hashlib
import json
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from daemon.core import datamemo
from dashboards import panels

if TYPE_CHECKING:
    from daemon.core.documents import Composed, SpecDoc

PLATFORM_NAME = "platform"
# Generated specs validated before, by their content: validation (PromQL parsing included) is most of
# derive's cost, and a daemon cycle or a warm plan regenerates the same dashboards every time.
_VALIDATED: dict[Any, tuple[Any, dict[str, Any]]] = {}
DERIVED_PREFIX = {"table": "table-", "model": "model-", "service": "service-"}
GENERATOR_VERSION = 1  # part of every memo key; the compose cache's disk file also digests this package


def derived_name(kind: str, name: str) -> str:
    return f"{DERIVED_PREFIX[kind]}{name}"


def derive_all(composed: Composed, memo: MutableMapping[Any, Any] | None = None) -> list[SpecDoc]:
    """The generated dashboards of `composed`. `memo` (default: this process's) maps a source document's
    content to its validated dashboard; compose passes the one it keeps with its cache, so a second
    `specd plan` neither regenerates nor revalidates (PromQL parsing is most of the cost)."""
    from daemon.core.documents import SpecDoc
    from daemon.schema.dashboard import DashboardSpec
    from daemon.shared.errors import SpecErrors, SpecIssue

    memo = _VALIDATED if memo is None else memo
    env = composed.env
    # (name, path, memo key, spec data or a generator of it); per-document dashboards depend only on
    # (kind, name, normalised data), so their key needs no generation
    generated: list[tuple[str, str, Any, Callable[[], dict[str, Any]]]] = []
    services: list[tuple[str, str, int]] = []
    for doc in composed.docs:
        if doc.kind not in DERIVED_PREFIX:
            continue
        if doc.kind == "service":
            host, port = service_address(doc.data, doc.name, env)
            services.append((doc.name, host, port))
        content = _content_digest(doc.data)
        build = _GENERATORS[doc.kind]
        generated.append((derived_name(doc.kind, doc.name), doc.path, (GENERATOR_VERSION, doc.kind, doc.name, content),
                          lambda build=build, doc=doc: build(doc.name, doc.data)))
    platform = panels.platform_dashboard(env, sorted(services))
    generated.append((PLATFORM_NAME, f"environments/{env.name}.yaml", json.dumps(platform, sort_keys=True, default=str), lambda: platform))

    docs: list[SpecDoc] = []
    issues: list[SpecIssue] = []
    for name, path, key, make in generated:
        hit = memo.get(key)
        if hit is None:
            data = make()
            try:
                spec = DashboardSpec.model_validate(data)
            except ValidationError as exc:  # a generator bug or an odd name: reject with the source file
                for error in exc.errors(include_url=False):
                    field = ".".join(str(p) for p in error["loc"])
                    issues.append(SpecIssue(path, 0, f"generated dashboard {name}: {field}", error["msg"]))
                continue
            if len(memo) > 20_000:
                memo.clear()
            hit = memo[key] = (spec, spec.model_dump(mode="json", by_alias=True))
        docs.append(SpecDoc("dashboard", name, path, hit[0], hit[1]))
    if issues:
        raise SpecErrors(issues)
    return docs


def _content_digest(data: dict[str, Any]) -> str:
    """sha1 of a document's normalised data; once per data object (`daemon.core.datamemo`: the compose
    cache hands the same immutable object every cycle, and keeps the digest with it on disk)."""
    return datamemo.text(data, "content-sha1", lambda: hashlib.sha1(_SORTED.encode(data).encode(), usedforsecurity=False).hexdigest())


# `json.dumps(data, sort_keys=True, default=str)`'s encoder, made once (json.dumps builds one per call).
_SORTED = json.JSONEncoder(sort_keys=True, default=str)


_GENERATORS: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
    "service": panels.service_dashboard,
    "model": panels.model_dashboard,
    "table": panels.table_dashboard,
}


def service_address(data: dict[str, Any], name: str, env: Any) -> tuple[str, int]:
    """Where a service's /metrics is scraped: its spec's host/port or the environment's defaults."""
    host = data.get("host") or env.services.host
    port = data.get("port")
    if port is None:
        from daemon.schema.service import default_port

        port = default_port(name, env.services.port_base)
    return host, int(port)
