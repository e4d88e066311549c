"""One reconcile cycle as plain steps: desired → observe → plan → apply → status.

Used by the CLI (`validate`, `plan`, `apply`, `status`) and by the daemon loop alike, so the text a PR
sees is the text the daemon logs. Each step passes immutable data; only adapters touch live systems.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from daemon.adapters.base import Adapter, AdapterContext
from daemon.core.compose import compose
from daemon.core.compose_cache import ComposeCache
from daemon.core.documents import Composed
from daemon.core.executor import ActionResult, execute
from daemon.core.graph import Graph, Resource, build_graph, resolve_references
from daemon.core.kinds import KINDS, load_object
from daemon.core.plan import Action, Plan, jsonable_change, make_plan, property_diff, structured_diff
from daemon.core.state import Observed
from daemon.runtime import guard, operations
from daemon.runtime.prefect_monitor import run_monitor_in_prefect
from daemon.runtime.prefect_runner import run_plan_in_prefect, to_run_logger
from daemon.shared.access_policy import PolicySource, load_source
from daemon.shared.errors import SpecErrors, SpecIssue
from daemon.shared.secrets import register_referenced


@dataclass(frozen=True)
class Desired:
    revision: str
    checkout: Path
    composed: Composed
    graph: Graph
    access: PolicySource | None = None  # specs/access/, validated; None: no policy (everything open)


def load_desired(checkout: Path, env_name: str, revision: str, overrides: Sequence[str] = (), cache: ComposeCache | None = None) -> Desired:
    """Compose + graph one revision. Raises SpecErrors listing every problem at once."""
    def read_text(rel: str) -> str:
        return (checkout / rel).read_text(encoding="utf-8")

    access, access_issues = None, []
    try:
        access = load_source(checkout)
    except SpecErrors as exc:
        access_issues = list(exc.issues)
    try:
        composed = compose(checkout, env_name, overrides, cache)
    except SpecErrors as exc:
        if exc.partial is None:
            raise SpecErrors(exc.issues + access_issues) from None
        valid, broken = exc.partial  # report unknown references of the valid files in the same breath
        _, reference_issues = resolve_references(valid, read_text, broken)
        raise SpecErrors(exc.issues + reference_issues + access_issues) from None
    if access_issues:
        raise SpecErrors(access_issues)
    composed = with_access(composed, access)
    graph = build_graph(composed, read_text=read_text)
    return Desired(revision, checkout, composed, graph, access)


def with_access(composed: Composed, access: PolicySource | None) -> Composed:
    """Services enforce the policy from their routing file, so the policy's digest is part of each
    service's fingerprint: a policy change in a commit plans (and shows) `access_policy: a → b` on every
    service and rewrites their routing files, with no restart."""
    if access is None:
        return composed
    docs = tuple(replace(d, data={**d.data, "access_policy": access.digest[:16]}) if d.kind == "service" else d for d in composed.docs)
    return replace(composed, docs=docs)


def context_for(desired: Desired, home: Path, progress: Callable[[str], None] | None = None, *, prefect: bool = True,
                monitor_runs: bool = False) -> AdapterContext:
    """`prefect`: whether this run has a Prefect API (deployments are observed and written on it).
    `monitor_runs` (the daemon, Prefect on): due monitoring checks run as Prefect flow runs."""
    return AdapterContext(
        env=desired.composed.env,
        home=home,
        repo_dir=desired.checkout,
        revision=desired.revision,
        progress=_teed(progress),
        prefect_api=prefect_api_url(desired.composed.env) if prefect else None,
        run_monitor=run_monitor_in_prefect if prefect and monitor_runs else None,
    )


def _teed(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    """Progress lines go to the caller (terminal, daemon log) and to the running Prefect task's log."""
    def emit(message: str) -> None:
        if progress is not None:
            progress(message)
        to_run_logger(message)

    return emit


def prefect_api_url(env) -> str:
    """The Prefect API a run uses: PREFECT_API_URL, the overlay's prefect.api_url, or the local server."""
    return os.environ.get("PREFECT_API_URL") or env.prefect.api_url or f"http://{env.prefect.host}:{env.prefect.port}/api"


def make_adapters(ctx: AdapterContext) -> dict[str, Adapter]:
    return {kind.name: load_object(kind.adapter)(ctx) for kind in KINDS}


def check(adapters: Mapping[str, Adapter], graph: Graph) -> None:
    """Checks that need live state or other resources (Adapter.check). Raises SpecErrors."""
    issues: list[SpecIssue] = []
    for kind, adapter in adapters.items():  # a check that cannot read live state is skipped, not fatal
        issues.extend(guard.check_kind(kind, adapter, [r for r in graph.resources if r.kind == kind], graph))
    if issues:
        raise SpecErrors(issues)


def observe(adapters: Mapping[str, Adapter], graph: Graph) -> dict[str, Observed]:
    """Every kind's observation; a resource whose live state cannot be read is Degraded, alone."""
    return guard.observe_all(adapters, graph)


def plan(desired: Desired, observed: Mapping[str, Observed], adapters: Mapping[str, Adapter], base: Desired | None = None,
         *, forced: Collection[str] = (), suspended: Collection[str] | None = None, warnings: Sequence[str] = ()) -> Plan:
    """The plan. Property diffs are against `base` (PRs) or, without it, against the spec recorded with the
    live state (`Observed.details["spec"]`). `suspended` defaults to the state home's suspensions."""
    base_data = {r.key: r.data for r in base.graph.resources} if base else {
        key: live.details["spec"] for key, live in observed.items() if isinstance(live.details.get("spec"), dict)}
    changes, structured = {}, {}
    for resource in desired.graph.resources:
        if resource.key in base_data and (items := structured_diff(base_data[resource.key], resource.data)):
            structured[resource.key] = tuple(jsonable_change(c) for c in items)
            changes[resource.key] = tuple(property_diff(base_data[resource.key], resource.data))
    if suspended is None:
        home = next((getattr(a, "ctx", None) for a in adapters.values()), None)
        suspended = set(operations.suspended(home.home)) if home is not None else set()

    def describe(action: Action, resource: Resource | None, live: Observed | None) -> str:
        adapter = adapters.get(action.kind)
        return adapter.describe(action, resource, live) if adapter else ""

    return make_plan(
        desired.revision,
        desired.composed.env.name,
        desired.graph,
        observed,
        env_prune=desired.composed.env.prune,
        describe=describe,
        base_revision=base.revision if base else None,
        property_changes=changes,
        structured_changes=structured,
        suspended=suspended,
        forced=forced,
        warnings=warnings,
    )


def simulated_observation(base: Desired, live: Mapping[str, Observed] | None = None) -> dict[str, Observed]:
    """What the live systems would look like with `base` applied: for PR plans (`plan --base`)."""
    observed: dict[str, Observed] = {}
    for resource in base.graph.resources:
        restorable = dict(live[resource.key].restorable) if live and resource.key in live else {}
        observed[resource.key] = Observed(True, resource.fingerprint, base.revision, "Healthy", restorable=restorable)
    return observed


def apply(
    the_plan: Plan,
    desired: Desired,
    adapters: Mapping[str, Adapter],
    *,
    use_prefect: bool = True,
    on_result: Callable[[ActionResult], None] | None = None,
) -> list[ActionResult]:
    """Carry out the plan's changes. Through one Prefect flow run unless `use_prefect` is False."""
    if not the_plan.has_changes:
        return []
    resources = desired.graph.by_key()
    env = desired.composed.env
    register_referenced([dict(r.data) for r in desired.graph.resources] + [env.model_dump(mode="json")])  # for the scrubber
    import asyncio  # only apply runs a loop: `specd plan` does not import asyncio

    async def run_action(action: Action):
        adapter = adapters[action.kind]
        return await asyncio.to_thread(adapter.apply, action, resources.get(action.key))

    options = dict(max_parallel=env.daemon.max_parallel_actions, retries=env.daemon.action_retries, backoff_s=env.daemon.retry_backoff_s, on_result=on_result)
    if use_prefect:  # one loop and one Prefect client for every cycle of the process (prefect_loop)
        from daemon.runtime import prefect_loop

        return prefect_loop.run(lambda: run_plan_in_prefect(the_plan, run_action, **options))
    return asyncio.run(execute(the_plan, run_action, **options))
