"""The resource graph: references → a DAG in dependency waves, and content fingerprints.

The fingerprint rule — *data identity, not spec identity, drives downstream work* (README and
daemon/CONTRACTS.md say the same):

    fingerprint = sha256(kind, name, shaping spec, code version,
                         fingerprints of the upstreams whose *spec* it consumes)

- **Shaping spec**: the normalised spec minus the kind's `metadata_fields` (description, owners, tags,
  and for tables schedule/maintenance/retention/prune; for models the `retrain` policy). Comments, key
  order, formatting and explicitly written defaults do not count either. A metadata-only edit keeps the
  fingerprint: the plan shows a *metadata update* (`Observed.drift`), nothing is rebuilt.
- **Upstreams whose data it consumes** (`Kind.data_inputs`: tables read tables, models train on tables)
  are *not* in the fingerprint. Instead each build records the data identity it consumed — a table its
  upstreams' data ids in the build key, a model release the table's version, content digest
  (`specd.data_digest`, a hash of the written rows) and row count — and `observe` compares that with
  the upstream's data now, or with what the upstream will hold once this apply has run (the plan marks
  such dependents as *following* the upstream). So a rebuild that produces the same data retrains
  nothing, and new rows in a table are a model's retrain policy's call, not a fingerprint change.
- **Upstreams whose spec it consumes** (a service routes a model's releases, a generated dashboard
  shows a resource) stay in the fingerprint.
- **Nothing read from outside Git** is in it: external inputs (an edited CSV, upstream data that
  advanced) are compared by the adapter's observe with what the live build recorded, and a difference
  is an `Observed.drift` reason ("inputs changed"), not a different fingerprint.

Secrets are in the spec only as `secret:NAME` markers, so no secret value can reach a fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from daemon.core import datamemo, deferred
from daemon.core.documents import Composed, SpecDoc
from daemon.core.kinds import kind_by_name
from daemon.core.yamlpos import line_for, parse_with_lines
from daemon.shared.errors import SpecErrors, SpecIssue


@dataclass(frozen=True)
class Resource:
    key: str  # "kind/name"
    kind: str
    name: str
    path: str
    spec: Any  # the validated pydantic model (stored as a `deferred.Deferred` until first read)
    data: Mapping[str, Any]
    depends_on: tuple[str, ...]
    fingerprint: str
    wave: int


deferred.install(Resource)


@dataclass(frozen=True)
class Graph:
    resources: tuple[Resource, ...]  # in topological order (waves, then kind order, then name)

    def by_key(self) -> dict[str, Resource]:
        return {r.key: r for r in self.resources}

    def dependents(self, key: str) -> set[str]:
        """Every resource downstream of `key` (transitively)."""
        children: dict[str, set[str]] = {}
        for r in self.resources:
            for parent in r.depends_on:
                children.setdefault(parent, set()).add(r.key)
        out: set[str] = set()
        stack = [key]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in out:
                    out.add(child)
                    stack.append(child)
        return out


# What `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)` builds
# on every call (its options are not the defaults), made once: a plan encodes ~10⁴ small values.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def fingerprint(kind: str, name: str, data: Mapping[str, Any], upstream: Mapping[str, str], code_version: str) -> str:
    material = {
        "kind": kind,
        "name": name,
        "spec": data,
        "upstream": dict(sorted(upstream.items())),
        "code": code_version,
        "inputs": {},  # always empty (see the rule above); kept so existing fingerprints, and live builds, stay valid
    }
    return hashlib.sha256(canonical_json(material).encode()).hexdigest()


def doc_fingerprint(kind: str, name: str, data: Mapping[str, Any], upstream: Mapping[str, str], code_version: str) -> str:
    """`fingerprint(kind, name, shaping_spec(kind, data), ...)`, byte for byte, remembered per data object
    (`datamemo`): the last fingerprint with the inputs it was computed for (one per object, so a changing
    upstream never piles entries up; the compose cache keeps it on disk), and in this process the
    shaping spec's canonical JSON. `canonical_json` sorts the material's keys, so its text is these
    parts in this order."""
    up = sorted(upstream.items())
    inputs = repr((kind, name, code_version, up))
    known = datamemo.get(data, f"fingerprint:{kind}")
    if known is not None and known.startswith(inputs) and known[len(inputs):len(inputs) + 1] == "\n":
        return known[len(inputs) + 1:]
    spec = datamemo.text(data, f"_shaping-json:{kind}", lambda: canonical_json(shaping_spec(kind, data)))
    material = (f'{{"code":{canonical_json(code_version)},"inputs":{{}},"kind":{canonical_json(kind)},"name":{canonical_json(name)},'
                f'"spec":{spec},"upstream":{canonical_json(dict(up))}}}')
    digest = hashlib.sha256(material.encode()).hexdigest()
    datamemo.put(data, f"fingerprint:{kind}", f"{inputs}\n{digest}")
    return digest


def shaping_spec(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a normalised spec that shapes what the resource builds (fingerprinted)."""
    drop = kind_by_name(kind).metadata_fields
    return {k: v for k, v in data.items() if k not in drop}


def metadata_of(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The descriptive part of a spec (not fingerprinted): applied as a metadata update."""
    keep = kind_by_name(kind).metadata_fields
    return {k: data[k] for k in keep if k in data}


def metadata_digest(kind: str, data: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(metadata_of(kind, data)).encode()).hexdigest()[:16]


def _ref_line(doc: SpecDoc, field: tuple, read_text: Callable[[str], str] | None) -> int:
    if read_text is None:
        return 0
    try:
        _, lines = parse_with_lines(read_text(doc.path))
    except Exception:
        return 0
    return line_for(lines, field)


def resolve_references(
    composed: Composed, read_text: Callable[[str], str] | None = None, broken: frozenset[str] = frozenset()
) -> tuple[dict[str, tuple[str, ...]], list[SpecIssue]]:
    """Each resource's upstream keys, and an issue per unknown or self reference. References to a
    resource in `broken` (its own file failed validation and is reported already) are not unknown."""
    docs = composed.by_key()
    issues: list[SpecIssue] = []
    deps: dict[str, tuple[str, ...]] = {}
    for key, doc in docs.items():
        refs = deferred.references(deferred.raw_spec(doc))
        targets = []
        for ref in refs:
            target = f"{ref.kind}/{ref.name}"
            field = ".".join(map(str, ref.field))
            if target in broken:
                continue
            if target not in docs:
                issues.append(SpecIssue(doc.path, _ref_line(doc, ref.field, read_text), field, f"unknown {ref.kind} {ref.name!r}"))
            elif target == key:
                issues.append(SpecIssue(doc.path, _ref_line(doc, ref.field, read_text), field, f"{doc.kind} {doc.name!r} depends on itself"))
            else:
                targets.append(target)
        deps[key] = tuple(sorted(set(targets)))
    return deps, issues


def build_graph(composed: Composed, read_text: Callable[[str], str] | None = None) -> Graph:
    """Resolve references, reject unknown ones and cycles, compute waves and fingerprints."""
    docs = composed.by_key()
    deps, issues = resolve_references(composed, read_text)
    if issues:
        raise SpecErrors(issues)

    order = _topological(docs, deps)
    if isinstance(order, list) and order and isinstance(order[0], SpecIssue):
        raise SpecErrors(order)  # type: ignore[arg-type]

    waves: dict[str, int] = {}
    fingerprints: dict[str, str] = {}
    resources = []
    for key in order:
        doc = docs[key]
        waves[key] = 1 + max((waves[d] for d in deps[key]), default=-1)
        kind = kind_by_name(doc.kind)
        upstream = {d: fingerprints[d] for d in deps[key] if d.split("/", 1)[0] not in kind.data_inputs}
        fingerprints[key] = doc_fingerprint(doc.kind, doc.name, doc.data, upstream, kind.code_version)
        resources.append(Resource(key, doc.kind, doc.name, doc.path, deferred.raw_spec(doc), doc.data, deps[key], fingerprints[key], waves[key]))
    resources.sort(key=lambda r: (r.wave, kind_by_name(r.kind).order, r.name))
    return Graph(tuple(resources))


def _topological(docs: Mapping[str, SpecDoc], deps: Mapping[str, tuple[str, ...]]) -> list:
    """Kahn's algorithm, deterministic (sorted ready set); on a cycle, one SpecIssue per file on it."""
    import heapq

    waiting = {k: len(v) for k, v in deps.items()}
    children: dict[str, list[str]] = {}
    for key, parents in deps.items():
        for parent in parents:
            children.setdefault(parent, []).append(key)
    ready = [k for k, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        key = heapq.heappop(ready)
        order.append(key)
        for child in children.get(key, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    if len(order) == len(deps):
        return order
    done = set(order)
    remaining = {k: {p for p in deps[k] if p not in done} for k in deps if k not in done}
    cycle = _find_cycle(remaining)
    text = " -> ".join(cycle + [cycle[0]])
    return [SpecIssue(docs[k].path, 0, "", f"dependency cycle: {text}") for k in cycle]


def _find_cycle(remaining: Mapping[str, set[str]]) -> list[str]:
    start = sorted(remaining)[0]
    path: list[str] = []
    node = start
    while node not in path:
        path.append(node)
        node = sorted(remaining[node])[0]
    return path[path.index(node):]
