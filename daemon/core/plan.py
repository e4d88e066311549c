"""Plan: desired (graph) × observed (adapters) → ordered actions. Pure data, no I/O.

The same `Plan` renders as text for a PR comment and for the daemon's log, and as JSON for tools.
Ops: create, update, restore (an earlier build with the same fingerprint exists: no recompute),
delete (spec removed and prune allowed), orphan (spec removed, kept: prune is off), unchanged, and
suspended (`specd suspend`: shown with what it would do, never applied).

An update with the same fingerprint comes from the live side's drift reasons (`Observed.drift`): a
metadata-only edit ("metadata update: description"), a fired retrain policy ("retrain: gold v2 has +100
rows since v1 ..."), changed inputs. A resource that consumes the *data* of an upstream changing in the
same apply *follows* it (`Action.follows`): apply re-checks it once the upstream is done and rebuilds
or retrains only if the data it consumes did change, and the plan line says so.

`to_json()` is versioned (`format_version`); each action's `changes` are structured property diffs
(`{"path", "before", "after"}`) against `--base` or, without it, the spec recorded with the live state.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
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
    SUSPENDED = "suspended"


SYMBOLS = {Op.CREATE: "+", Op.UPDATE: "~", Op.RESTORE: "<", Op.DELETE: "-", Op.ORPHAN: "!", Op.UNCHANGED: "=", Op.SUSPENDED: "#"}
FORMAT_VERSION = 2  # of Plan.to_json: 2 added format_version, structured `changes`, `follows`, `suspended`
METADATA_REASON = "metadata update"  # drift reason prefix: only descriptive fields changed
SYNC_REASON = "sync requested"  # reason of an action forced by `specd sync`: apply refreshes even if in sync
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
    follows: tuple[str, ...] = ()  # upstreams whose data it consumes that change in the same apply
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
    structured_changes: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

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
            item["follows"] = list(action.follows)
            item["changes"] = [dict(c) for c in self.structured_changes.get(action.key, ())]
            item["change_lines"] = list(self.property_changes.get(action.key, ()))
            actions.append(item)
        return {
            "format_version": FORMAT_VERSION,
            "warnings": list(self.warnings),
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
        lines += [f"  warning: {w}" for w in self.warnings] + ([""] if self.warnings else [])
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
        if counts[Op.SUSPENDED]:
            parts.append(f"{counts[Op.SUSPENDED]} suspended")
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
    structured_changes: Mapping[str, tuple[dict[str, Any], ...]] | None = None,
    suspended: Collection[str] = (),
    forced: Collection[str] = (),
    warnings: Sequence[str] = (),
) -> Plan:
    """Diff desired against observed. Deterministic: waves, then kind order, then name.

    `forced` keys (`specd sync`) are updated even when in sync; `suspended` keys are shown as suspended
    (with what they would do) and never applied, nor followed by their dependents."""
    actions: list[Action] = []
    desired = graph.by_key()
    changing: set[str] = set()
    for resource in graph.resources:  # topological: upstreams are decided first
        live = observed.get(resource.key, MISSING_OBSERVED)
        action = _diff(resource, live)
        if resource.key in forced and action.op == Op.UNCHANGED:
            action = replace(action, op=Op.UPDATE, reason=SYNC_REASON)
        data_inputs = kind_by_name(resource.kind).data_inputs
        follows = tuple(d for d in resource.depends_on if d in changing and d.split("/", 1)[0] in data_inputs)
        if follows:
            if action.op == Op.UNCHANGED:
                action = replace(action, op=Op.UPDATE, reason=f"follows {', '.join(follows)} (changes in this apply)")
            action = _evolve(action, follows=follows)
        if resource.key in suspended and action.op in CHANGING:
            action = replace(action, op=Op.SUSPENDED, reason=f"suspended (specd resume {resource.key}); would {action.op}: {action.reason}")
        if action.op in CHANGING and not action.reason.startswith(METADATA_REASON):  # metadata moves no data
            changing.add(resource.key)
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
    return Plan(revision, env, tuple(actions), base_revision, dict(property_changes or {}),
                dict(structured_changes or {}), tuple(warnings))


def _with_summary(action: Action, summary: str) -> Action:
    return _evolve(action, summary=summary)


def _evolve(action: Action, **changes: Any) -> Action:
    """`replace(action, **changes)`, without `dataclasses.replace`'s per-call field walk (a third of
    `make_plan` for 2,000 actions): Action has no `__post_init__`, so a copy of its fields is the same."""
    unknown = set(changes) - action.__dict__.keys()
    if unknown:
        raise TypeError(f"Action has no field {sorted(unknown)}")
    copy = object.__new__(Action)
    copy.__dict__.update(action.__dict__, **changes)
    return copy


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
    metadata_only = same and all(d.startswith(METADATA_REASON) for d in live.drift)  # the data stays as it is
    if handle is not None and not metadata_only:
        drifted = "".join(f"{d}; " for d in live.drift)
        return Action(resource.kind, resource.name, Op.RESTORE, f"{drifted}an earlier build matches ({handle}); no recompute", restore_from=handle, **common)
    return Action(resource.kind, resource.name, Op.UPDATE, "; ".join(why), **common)


def property_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, prefix: str = "") -> list[str]:
    """Feast-style property diff of two normalised specs: `path: old → new` lines."""
    return [f"{c['path']}: {_short(c['before'])} → {_short(c['after'])}" for c in structured_diff(old, new, prefix)]


def structured_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, prefix: str = "") -> list[dict[str, Any]]:
    """The same diff as data: `{"path", "before", "after"}` per changed leaf (`_ABSENT` → None in JSON,
    with `"added"`/`"removed"` set when the path exists on one side only)."""
    out: list[dict[str, Any]] = []
    old = old or {}
    new = new or {}
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{key}"
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(structured_diff(a, b, path + "."))
        elif _keyed(a) is not None and _keyed(b) is not None:  # lists of named items: variants, columns
            for change in structured_diff(_keyed(a), _keyed(b), path + "."):
                out.append({**change, "path": change["path"].replace(".[", "[", 1)})
        else:
            change: dict[str, Any] = {"path": path, "before": a, "after": b}
            out.append(change)
    return out


def jsonable_change(change: Mapping[str, Any]) -> dict[str, Any]:
    out = {"path": change["path"], "before": None if isinstance(change["before"], _Absent) else change["before"],
           "after": None if isinstance(change["after"], _Absent) else change["after"]}
    if isinstance(change["before"], _Absent):
        out["added"] = True
    if isinstance(change["after"], _Absent):
        out["removed"] = True
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
