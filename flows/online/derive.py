"""Derive one `online/<table>` resource per table spec with an `online:` block (the kind's derive hook).

Pure and light (runs inside `compose` for every validate and plan). It also checks what only the set of
specs can tell: a service's `features_from` must name a table that is served online, by one of its keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.core.documents import Composed, SpecDoc


def online_data(table: str, data: dict[str, Any], columns: list[str] | None) -> dict[str, Any]:
    block = dict(data["online"])
    features = list(block.get("features") or [])
    if not features and columns is not None:  # resolved now when the spec tells the columns
        skip = {*block["keys"], block.get("timestamp")}
        features = [c for c in columns if c not in skip]
    return {"table": table, "keys": list(block["keys"]), "features": features, "timestamp": block.get("timestamp"),
            "ttl_s": block.get("ttl_s"), "store": block.get("store", "default"), "prune": data.get("prune")}


def derive_online(composed: Composed, memo: object = None) -> list[SpecDoc]:
    """One `online/<table>` resource per table with an `online:` block (cheap: no memo needed; the
    compose cache hands every derive hook one, see daemon/CONTRACTS.md)."""
    from daemon.core.documents import SpecDoc
    from daemon.schema.online import OnlineSpec
    from daemon.shared.errors import SpecErrors, SpecIssue

    docs: list[SpecDoc] = []
    served: dict[str, list[str]] = {}
    for doc in composed.docs:
        if doc.kind != "table" or not doc.data.get("online"):
            continue
        data = online_data(doc.name, doc.data, doc.spec.known_columns())
        docs.append(SpecDoc("online", doc.name, doc.path, OnlineSpec.model_validate(data), data))
        served[doc.name] = data["keys"]
    issues = []
    for doc in composed.docs:
        source = doc.data.get("features_from") if doc.kind == "service" else None
        if not source:
            continue
        keys = served.get(source["table"])
        tables = {d.name for d in composed.docs if d.kind == "table"}
        if source["table"] not in tables:
            continue  # an unknown table is reported by the graph with its line
        if keys is None:
            issues.append(SpecIssue(doc.path, 0, "features_from.table", f"table {source['table']!r} has no online: block; add online: {{keys: [{source['key']}]}} to it"))
        elif keys != [source["key"]]:
            issues.append(SpecIssue(doc.path, 0, "features_from.key", f"{source['key']!r} is not the online key of table {source['table']!r} (keys: {keys})"))
    if issues:
        raise SpecErrors(issues)
    return docs
