"""The promotion rule as a pure function: candidates' metrics + the champion's → a decision with a reason.

Import-light (stdlib only): the adapter decides inside the daemon process after the training
subprocesses have written their results. The rule: among candidates that trained without diverging
and pass every guardrail, the best by the promotion metric wins if it beats the champion (re-scored on
the same holdout) by at least `min_improvement`; otherwise the champion stays and the reason says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OK_STATUSES = ("trained", "reused")


@dataclass(frozen=True)
class Rule:
    metric: str
    maximize: bool
    min_improvement: float = 0.0
    guardrails: Sequence[Mapping[str, Any]] = ()  # {metric, min, max, attribute}


@dataclass(frozen=True)
class Decision:
    champion: str | None  # tag
    challengers: tuple[str, ...]
    promoted: str | None  # candidate name that became champion in this decision, if any
    outcome: str  # "promoted" | "kept" | "none"
    reason: str
    guardrail_failures: dict[str, list[str]] = field(default_factory=dict)


def metric_value(metrics: Mapping[str, Any] | None, name: str, attribute: str | None = None) -> float | None:
    """A scalar metric by name (fairness metrics per attribute); None when absent or NaN."""
    if not metrics:
        return None
    value = (metrics.get("fairness") or {}).get(attribute, {}).get(name) if attribute else metrics.get(name)
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def guardrail_failures(metrics: Mapping[str, Any], guardrails: Sequence[Mapping[str, Any]]) -> list[str]:
    failures = []
    for guard in guardrails:
        label = guard["metric"] + (f"[{guard['attribute']}]" if guard.get("attribute") else "")
        value = metric_value(metrics, guard["metric"], guard.get("attribute"))
        if value is None:
            failures.append(f"{label} unavailable")
        elif guard.get("min") is not None and value < guard["min"]:
            failures.append(f"{label} {value:.3f} < {guard['min']}")
        elif guard.get("max") is not None and value > guard["max"]:
            failures.append(f"{label} {value:.3f} > {guard['max']}")
    return failures


def decide(
    rule: Rule,
    candidates: Mapping[str, Mapping[str, Any]],
    champion_tag: str | None,
    champion_metrics: Mapping[str, Any] | None,
) -> Decision:
    """`candidates`: name → {"tag", "status", "metrics", "message"} in spec order."""
    failures: dict[str, list[str]] = {}
    eligible: list[tuple[str, str, float]] = []
    notes = []
    for name, result in candidates.items():
        if result.get("status") not in OK_STATUSES:
            notes.append(f"{name} {result.get('status')}: {result.get('message', '')}".rstrip(": "))
            continue
        problems = guardrail_failures(result.get("metrics") or {}, rule.guardrails)
        score = metric_value(result.get("metrics"), rule.metric)
        if score is None:
            problems.append(f"{rule.metric} unavailable")
        if problems:
            failures[name] = problems
            notes.append(f"{name} failed guardrails ({'; '.join(problems)})")
            continue
        eligible.append((name, result["tag"], score))  # type: ignore[arg-type]
    sign = 1.0 if rule.maximize else -1.0
    best = max(eligible, key=lambda item: sign * item[2]) if eligible else None
    champion_score = metric_value(champion_metrics, rule.metric)
    suffix = f" ({'; '.join(notes)})" if notes else ""

    def challengers(champion: str | None) -> tuple[str, ...]:
        return tuple(dict.fromkeys(tag for _, tag, _ in eligible if tag != champion))

    if best is None:
        if champion_tag:
            return Decision(champion_tag, (), None, "kept", f"kept champion: no candidate qualified{suffix}", failures)
        return Decision(None, (), None, "none", f"no champion: no candidate qualified{suffix}", failures)
    name, tag, score = best
    if champion_tag is None:
        reason = f"promoted {name}: {rule.metric} {score:.4f} (no previous champion){suffix}"
        return Decision(tag, challengers(tag), name, "promoted", reason, failures)
    if tag == champion_tag:
        return Decision(champion_tag, challengers(champion_tag), None, "kept", f"kept champion: {name} is still best ({rule.metric} {score:.4f}){suffix}", failures)
    if champion_score is None:
        reason = f"promoted {name}: {rule.metric} {score:.4f}; the champion could not be re-scored on this holdout{suffix}"
        return Decision(tag, challengers(tag), name, "promoted", reason, failures)
    improvement = sign * (score - champion_score)
    if improvement > 0 and improvement >= rule.min_improvement:
        reason = f"promoted {name}: {rule.metric} {score:.4f} vs champion {champion_score:.4f} (+{improvement:.4f} ≥ {rule.min_improvement:g}){suffix}"
        return Decision(tag, challengers(tag), name, "promoted", reason, failures)
    if rule.min_improvement > 0:
        shortfall = f"improvement {improvement:+.4f} < required {rule.min_improvement:g}"
    else:  # any gain would have done: say it did not improve, not "+0.0000 < required 0"
        shortfall = "no improvement" if improvement == 0 else f"worse by {abs(improvement):.4g}"
    reason = (f"kept champion: best candidate {name} {rule.metric} {score:.4f} vs champion {champion_score:.4f} "
              f"({shortfall}){suffix}")
    return Decision(champion_tag, challengers(champion_tag), None, "kept", reason, failures)
