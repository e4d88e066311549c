"""Plan: desired (graph) × observed (adapters) → ordered actions. Pure data, no I/O.

The same `Plan` renders as text for a PR comment and for the daemon's log, and as JSON for tools.
Ops: create, update, restore (an earlier build with the same fingerprint exists: no recompute),
delete (spec removed and prune allowed), orphan (spec removed, kept: prune is off), unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from daemon.core.graph import Graph, Resource
from daemon.core.kinds import kind_by_name
from daemon.core.state import MISSING_OBSERVED, Observed


class Op(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    RESTORE = "restore"
    DELETE = "delete"
    ORPHAN = "orphan"
    UNCHANGED = "unchanged"


SYMBOLS = {Op.CREATE: "+", Op.UPDATE: "~", Op.RESTORE: "<", Op.DELETE: "-", Op.ORPHAN: "!", Op.UNCHANGED: "="}
CHANGING = (Op.CREATE, Op.UPDATE, Op.RESTORE, Op.DELETE)


@dataclass(frozen=True)
class Action:
    kind: str
    name: str
    op: Op
    reason: str
    fingerprint: str | None = None  # desired
    previous: str | None = None  # live
    restore_from: str | None = None  # adapter handle of the earlier build (restore only)
    depends_on: tuple[str, ...] = ()
    wave: int = 0
    summary: str = ""  # adapter's one-liner: what will happen and what it costs
    drift: tuple[str, ...] = ()  # why the live resource differs although its fingerprint may match (Observed.drift)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Plan:
    revision: str
    env: str
    actions: tuple[Action, ...]
    base_revision: str | None = None
    property_changes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def changes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.op in CHANGING)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def counts(self) -> Counter:
        return Counter(a.op for a in self.actions)

    def to_json(self) -> dict[str, Any]:
        actions = []
        for action in self.actions:
            item = asdict(action)
            item["op"] = str(action.op)
            item["depends_on"] = list(action.depends_on)
            item["drift"] = list(action.drift)
            item["changes"] = list(self.property_changes.get(action.key, ()))
            actions.append(item)
        return {
            "revision": self.revision,
            "base_revision": self.base_revision,
            "env": self.env,
            "summary": {str(op): n for op, n in sorted(self.counts().items())},
            "actions": actions,
        }

    def to_text(self, show_unchanged: bool = False) -> str:
        head = f"specd plan for {self.revision[:12]} (env {self.env})"
        if self.base_revision:
            head += f", against base {self.base_revision[:12]}"
        lines = [head, ""]
        shown = [a for a in self.actions if show_unchanged or a.op != Op.UNCHANGED]
        width = max((len(f"{a.kind} {a.name}") for a in shown), default=0)
        for action in shown:
            label = f"{action.kind} {action.name}".ljust(width)
            text = f"  {SYMBOLS[action.op]} {label}  {str(action.op):<9}  {action.reason}"
            if action.summary:
                text += f" — {action.summary}"
            lines.append(text)
            for change in self.property_changes.get(action.key, ())[:8]:
                lines.append(f"      {change}")
        if not shown:
            lines.append("  No changes. The live systems match the specs.")
        counts = self.counts()
        parts = [f"{counts[op]} to {op}" for op in CHANGING if counts[op]]
        if counts[Op.ORPHAN]:
            parts.append(f"{counts[Op.ORPHAN]} orphaned (kept)")
        parts.append(f"{counts[Op.UNCHANGED]} unchanged")
        lines += ["", "Plan: " + ", ".join(parts) + "."]
        return "\n".join(lines)


Describer = Callable[[Action, Resource | None, Observed | None], str]


def make_plan(
    revision: str,
    env: str,
    graph: Graph,
    observed: Mapping[str, Observed],
    *,
    env_prune: bool = False,
    describe: Describer | None = None,
    base_revision: str | None = None,
    property_changes: Mapping[str, tuple[str, ...]] | None = None,
) -> Plan:
    """Diff desired against observed. Deterministic: waves, then kind order, then name."""
    actions: list[Action] = []
    desired = graph.by_key()
    for resource in graph.resources:
        live = observed.get(resource.key, MISSING_OBSERVED)
        action = _diff(resource, live)
        actions.append(action)
    max_wave = max((r.wave for r in graph.resources), default=-1)
    for key in sorted(set(observed) - set(desired), key=lambda k: (-kind_by_name(k.split("/")[0]).order, k)):
        live = observed[key]
        if not live.exists:
            continue
        kind, name = key.split("/", 1)
        prune = env_prune if live.prune is None else live.prune
        if prune:
            actions.append(Action(kind, name, Op.DELETE, "spec removed; prune is on", None, live.fingerprint, wave=max_wave + 1))
        elif live.drift:  # kept, but something of it must still go (a removed table's schedule deployment)
            actions.append(Action(kind, name, Op.UPDATE, "spec removed; kept because prune is off; " + "; ".join(live.drift),
                                  None, live.fingerprint, wave=max_wave + 1, drift=tuple(live.drift)))
        else:
            actions.append(Action(kind, name, Op.ORPHAN, "spec removed; kept because prune is off", None, live.fingerprint, wave=max_wave + 1))
    if describe:
        actions = [
            _with_summary(a, describe(a, desired.get(a.key), observed.get(a.key))) if a.op in CHANGING else a for a in actions
        ]
    return Plan(revision, env, tuple(actions), base_revision, dict(property_changes or {}))


def _with_summary(action: Action, summary: str) -> Action:
    return replace(action, summary=summary)


def _diff(resource: Resource, live: Observed) -> Action:
    """One resource: the op and its reason. A fingerprint mismatch means the spec (or the code, or an
    upstream's fingerprint) changed; `live.drift` says why an equal fingerprint is still not in sync."""
    common = dict(fingerprint=resource.fingerprint, previous=live.fingerprint, depends_on=resource.depends_on, wave=resource.wave, drift=tuple(live.drift))
    if not live.exists:
        return Action(resource.kind, resource.name, Op.CREATE, "does not exist yet", **common)
    same = live.fingerprint == resource.fingerprint
    if same and not live.drift:
        return Action(resource.kind, resource.name, Op.UNCHANGED, "up to date", **common)
    why = ([] if same else ["spec changed"]) + list(live.drift)
    handle = live.restorable.get(resource.fingerprint)
    if handle is not None:
        drifted = "".join(f"{d}; " for d in live.drift)
        return Action(resource.kind, resource.name, Op.RESTORE, f"{drifted}an earlier build matches ({handle}); no recompute", restore_from=handle, **common)
    return Action(resource.kind, resource.name, Op.UPDATE, "; ".join(why), **common)


def property_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, prefix: str = "") -> list[str]:
    """Feast-style property diff of two normalised specs: `path: old → new` lines."""
    out: list[str] = []
    old = old or {}
    new = new or {}
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{key}"
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(property_diff(a, b, path + "."))
        elif _keyed(a) is not None and _keyed(b) is not None:  # lists of named items: variants, columns
            out.extend(line.replace(".[", "[", 1) for line in property_diff(_keyed(a), _keyed(b), path + "."))
        else:
            out.append(f"{path}: {_short(a)} → {_short(b)}")
    return out


def _keyed(value: Any) -> dict[str, Any] | None:
    """A list of dicts that all have a distinct `name`, as {"[name]": item}; else None."""
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) and "name" in v for v in value):
        return None
    keyed = {f"[{v['name']}]": v for v in value}
    return keyed if len(keyed) == len(value) else None


class _Absent:
    def __repr__(self) -> str:
        return "(unset)"


_ABSENT = _Absent()


def _short(value: Any) -> str:
    text = value if isinstance(value, _Absent) else json.dumps(value, sort_keys=True, default=str)
    text = str(text)
    return text if len(text) <= 60 else text[:57] + "..."
