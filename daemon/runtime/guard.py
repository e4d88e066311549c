"""One broken resource degrades only itself: the observe and check steps never fail as a whole.

Adapters read live state that may be broken in ways no spec review catches (a truncated Delta log, a
garbled routing file, a release file cut short by a full disk). They report what they can name
themselves (`daemon.shared.corrupt.CorruptState` → a Degraded observation naming the file); this module
is the net under them for anything that still escapes. If a kind's `observe` raises, it is asked again
one resource at a time, and each resource that still raises becomes a Degraded observation naming the
error — so `plan` reports it and goes on, and the daemon keeps reconciling everything else. A `check`
that raises is skipped with a warning: live state that cannot be read is not a fault of the commit
(the resource's observation says what is wrong).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from daemon.adapters.base import Adapter
from daemon.core.graph import Graph, Resource
from daemon.core.state import DEGRADED, Observed
from daemon.shared.errors import SpecIssue
from daemon.shared.scrub import scrub

log = logging.getLogger("specd.observe")


def failed_observation(kind: str, exc: BaseException) -> Observed:
    """A resource whose live state could not be observed: Degraded, with the reason, fingerprint unknown."""
    detail = str(exc).splitlines()[0] if str(exc) else ""
    message = scrub(f"cannot observe {kind}: {type(exc).__name__}: {detail}" if detail else f"cannot observe {kind}: {type(exc).__name__}")
    return Observed(exists=True, fingerprint=None, health=DEGRADED, message=message, drift=(message,))


def observe_kind(kind: str, adapter: Adapter, resources: Sequence[Resource]) -> dict[str, Observed]:
    """`adapter.observe(resources)`; on an exception, resource by resource, each failure Degraded."""
    try:
        return adapter.observe(resources)
    except Exception as exc:
        log.warning("observing %s failed (%s: %s); observing each resource alone", kind, type(exc).__name__, exc)
        whole = exc
    observed: dict[str, Observed] = {}
    for resource in resources:
        try:
            one = adapter.observe([resource])
        except Exception as exc:
            log.error("cannot observe %s: %s: %s", resource.key, type(exc).__name__, exc)
            observed[resource.key] = failed_observation(resource.key, exc)
            continue
        for key, value in one.items():  # live resources without a spec come back with each call
            if key == resource.key or key not in observed:
                observed[key] = value
    if not resources:
        log.error("cannot observe %s: %s: %s", kind, type(whole).__name__, whole)
    return observed


def observe_all(adapters: Mapping[str, Adapter], graph: Graph) -> dict[str, Observed]:
    observed: dict[str, Observed] = {}
    for kind, adapter in adapters.items():
        observed.update(observe_kind(kind, adapter, [r for r in graph.resources if r.kind == kind]))
    return observed


def check_kind(kind: str, adapter: Adapter, resources: Sequence[Resource], graph: Graph) -> list[SpecIssue]:
    hook = getattr(adapter, "check", None)
    if hook is None:
        return []
    try:
        return list(hook(resources, graph))
    except Exception as exc:
        log.warning("check of %s skipped: %s: %s (live state unreadable; see the resource's status)", kind, type(exc).__name__, exc)
        return []
