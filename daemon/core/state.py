"""The core's vocabulary for live state: what an adapter observed, how healthy it is, what an apply returned.

Adapters produce these values and the pure core (plan, executor, status) consumes them, so they live in the
core: the adapter package depends on the core, never the other way round. Health values follow Flux and
Argo CD.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HEALTHY, PROGRESSING, DEGRADED, MISSING = "Healthy", "Progressing", "Degraded", "Missing"


@dataclass(frozen=True)
class Observed:
    """What one live resource is, as read from the live system."""

    exists: bool
    fingerprint: str | None = None  # fingerprint of what is live now
    revision: str | None = None  # git sha that produced it
    health: str = MISSING
    message: str = ""
    # fingerprint -> handle (e.g. "3" for a Delta version): earlier states that can be brought back without recompute
    restorable: Mapping[str, str] = field(default_factory=dict)
    prune: bool | None = None  # the prune policy recorded when it was applied (for removed specs)
    details: Mapping[str, Any] = field(default_factory=dict)
    # Why the live resource differs from what its fingerprint says (inputs changed, process not running,
    # launch settings changed, edited in Grafana, data advanced, ...): the plan reports these reasons.
    drift: tuple[str, ...] = ()


MISSING_OBSERVED = Observed(exists=False)


@dataclass(frozen=True)
class ApplyOutcome:
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
