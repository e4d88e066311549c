"""Run one due monitoring check (a model's drift check) as a Prefect flow run the daemon owns.

Why a flow run and not a scheduled deployment: the check's verdict must reach the same cycle's plan (as an
`Observed.drift` reason), and its timing is already the adapter's (`monitoring.interval_s`, verdict cached
under the state home), so the daemon runs a *due* check inline from the model's observe and only wraps it
in a flow run: the Prefect UI then lists every check (`specd-drift-check`, tagged `specd`, `model:<name>`,
`env:<env>`, `revision:<sha12>`) with its report as a markdown artifact and its state (Completed, or Failed
with the error). A check that is not due reads the cached verdict and creates no run, so idle cycles stay
cheap; one due check costs the check plus one async flow run and its artifact (tests/bench/bench_drift_flow.py:
0.66 s wall, 0.16 s CPU in the daemon's process, on 2 shared cores at load ≈ 11).

The check's own outcome is the caller's: its exception is re-raised after the Failed run is recorded (the
model adapter turns it into a note; nothing crashes the daemon). When Prefect itself fails before the check
ran (server down), the check runs inline and a warning is logged: monitoring never depends on the UI.

Prefect is imported inside the functions only, like `prefect_runner`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from daemon.shared.scrub import scrub

T = TypeVar("T")
log = logging.getLogger(__name__)
_UNSET = object()


def run_monitor_in_prefect(name: str, labels: Mapping[str, str], fn: Callable[[], T], describe: Callable[[T], str] | None = None) -> T:
    """fn() inside a flow run `name` tagged `specd` + `key:value` per label; its result (or its exception)."""
    outcome: dict[str, Any] = {"result": _UNSET, "error": None}
    try:
        _run_sync(lambda: _flow_run(name, dict(labels), fn, describe, outcome))
    except Exception as exc:  # Prefect's failure, not the check's
        if outcome["result"] is _UNSET and outcome["error"] is None:
            log.warning("%s: no Prefect flow run (%s: %s); running the check inline", name, type(exc).__name__, scrub(str(exc))[:300])
            return fn()
        log.warning("%s: Prefect flow run not fully recorded: %s: %s", name, type(exc).__name__, scrub(str(exc))[:300])
    if outcome["error"] is not None:
        raise outcome["error"]
    return outcome["result"]


async def _flow_run(name: str, labels: dict[str, str], fn: Callable[[], Any], describe: Callable[[Any], str] | None,
                    outcome: dict[str, Any]) -> Any:
    import asyncio

    from prefect import flow, tags
    from prefect.artifacts import acreate_markdown_artifact
    from prefect.states import Failed

    from daemon.runtime.prefect_runner import _artifact_key, _local_result_storage

    subject = labels.get("model") or next(iter(labels.values()), name)
    key = _artifact_key(f"{name}-{subject}")

    @flow(name=name, flow_run_name=f"{subject} @ {labels.get('revision', '')}".strip(" @"), validate_parameters=False,
          log_prints=False, persist_result=False, result_storage=_local_result_storage())
    async def monitor_check() -> Any:
        try:
            result = await asyncio.to_thread(fn)  # the check blocks (DuckDB, Delta): off the flow's event loop
        except Exception as exc:
            outcome["error"] = exc
            error = scrub(f"{type(exc).__name__}: {exc}")
            await acreate_markdown_artifact(markdown=f"# {name} of `{subject}` failed\n\n```\n{error[:2000]}\n```\n",
                                            key=key, description=f"{name} {subject}: failed")
            # A Failed state returned, not raised: Prefect then stores no pickled exception as a result record.
            return Failed(message=error.splitlines()[0][:500] if error else type(exc).__name__)
        outcome["result"] = result
        if describe is not None:
            try:
                markdown = scrub(describe(result))
            except Exception as exc:  # a report that cannot be rendered does not fail a check that ran
                markdown = f"# {name} of `{subject}`\n\n(report not rendered: {scrub(f'{type(exc).__name__}: {exc}')[:500]})\n"
            await acreate_markdown_artifact(markdown=markdown, key=key, description=f"{name} {subject}")

    with tags("specd", *(f"{k}:{v}" for k, v in labels.items())):
        return await monitor_check(return_state=True)  # the check's outcome travels in `outcome`


def _run_sync(coro_factory: Callable[[], Any]) -> Any:
    """Run a coroutine to completion from sync code (observe), also when this thread already has a loop."""
    import asyncio  # not at module level: `specd plan` imports this module and runs no loop
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coro_factory())).result()
