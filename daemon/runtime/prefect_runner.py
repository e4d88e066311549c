"""Run a plan's actions as one Prefect flow run, one task run per action: Prefect as the observability surface.

One *async* flow per reconcile cycle (an async flow costs ~0.2 s, a sync one ≥ 1.1 s), coarse tasks
(7–18 ms each). Ordering, blocking and failure isolation stay in `daemon.core.executor`, so the same
logic runs without Prefect in tests. What the Prefect UI of a cycle shows:

- edges: each task run waits for (`wait_for`) the task runs of the actions it depends on, so the
  task graph is the plan's dependency graph;
- retries: Prefect-native (`retries`, `retry_condition_fn` = transient errors only), so a retried
  action shows `AwaitingRetry`/`Retrying` instead of "Retries 0";
- logs: every adapter's `ctx.progress` line goes to the running task's Prefect logger (`to_run_logger`);
- tags: the flow run `specd`, `env:<env>`, `revision:<sha12>`; each task `kind:<kind>`, `op:<op>`;
- artifacts: the plan as markdown (key `specd-plan`), and an action's `details["report"]` rows (the
  model's candidates and metrics) as a table artifact.

Prefect is imported inside the functions only: importing this module stays light.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from daemon.core.executor import ActionResult, RunAction, execute, is_transient
from daemon.core.plan import Action, Plan

REPORT = "report"  # ApplyOutcome.details key: rows rendered as a Prefect table artifact


def to_run_logger(message: str) -> None:
    """Send one progress line to the current Prefect task (or flow) run's log, when inside one."""
    if "prefect" not in sys.modules:
        return
    from prefect.context import FlowRunContext, TaskRunContext

    if TaskRunContext.get() is None and FlowRunContext.get() is None:
        return
    from prefect.logging import get_run_logger
    from prefect.logging.loggers import PrefectLogAdapter

    run_logger = get_run_logger()  # carries the run ids; its own logger obeys PREFECT_LOGGING_LEVEL (WARNING)
    PrefectLogAdapter(_api_logger(), run_logger.extra).info("%s", message)


def _api_logger() -> logging.Logger:
    """A logger that only ships INFO lines to the Prefect API (the console already has them from `specd`)."""
    logger = logging.getLogger("specd.prefect_run")
    if not logger.handlers:
        from prefect.logging.handlers import APILogHandler

        logger.addHandler(APILogHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def plan_markdown(plan: Plan) -> str:
    rows = ["| | resource | op | reason | what |", "|---|---|---|---|---|"]
    for action in plan.changes:
        rows.append(f"| {action.wave} | `{action.key}` | {action.op} | {action.reason} | {action.summary} |")
    return f"# specd plan for `{plan.revision[:12]}` (env {plan.env})\n\n" + "\n".join(rows) + "\n\n```\n" + plan.to_text() + "\n```\n"


async def run_plan_in_prefect(
    plan: Plan,
    run_action: RunAction,
    *,
    max_parallel: int,
    retries: int,
    backoff_s: float,
    on_result: Callable[[ActionResult], None] | None = None,
) -> list[ActionResult]:
    from prefect import flow, tags, task
    from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
    from prefect.cache_policies import NO_CACHE

    states: dict[str, Any] = {}

    def transient_only(_task: Any, _run: Any, state: Any) -> bool:
        return isinstance(state.data, BaseException) and is_transient(state.data)

    async def call(action: Action):  # the task body: one adapter action
        outcome = await run_action(action)
        report = outcome.details.get(REPORT) if outcome.details else None
        if report:
            await acreate_table_artifact(table=list(report), key=_artifact_key(f"specd-{action.kind}-{action.name}"),
                                         description=f"{action.op} {action.key}: {outcome.message}")
        return outcome

    async def as_task(action: Action):
        named = task(
            call, name=f"{action.op} {action.key}", cache_policy=NO_CACHE, persist_result=False, log_prints=False,
            retries=retries, retry_delay_seconds=[backoff_s * 2**i for i in range(retries)] if retries else 0,
            retry_condition_fn=transient_only, tags=[f"kind:{action.kind}", f"op:{action.op}"],
        )
        upstream = [states[k] for k in action.depends_on if k in states and states[k].is_completed()]
        state = await named(action, return_state=True, wait_for=upstream or None)
        states[action.key] = state
        return await state.aresult()  # the adapter's outcome, or its exception (after Prefect's retries)

    @flow(
        name="specd-reconcile",
        flow_run_name=f"{plan.env} @ {plan.revision[:12]}",
        validate_parameters=False,
        log_prints=False,
        persist_result=False,
        result_storage=_local_result_storage(),
    )
    async def reconcile(revision: str, env: str, changes: int) -> list[ActionResult]:
        # The plan artifact is written while the first actions run (one API round trip off every cycle's path).
        import asyncio  # not at module level: `specd plan` imports this module and runs no loop

        artifact = asyncio.create_task(acreate_markdown_artifact(markdown=plan_markdown(plan), key="specd-plan", description=f"plan for {revision[:12]}"))
        try:
            # Retries are Prefect's (above); the executor only orders, blocks and isolates.
            return await execute(plan, as_task, max_parallel=max_parallel, retries=0, backoff_s=backoff_s, on_result=on_result)
        finally:
            await artifact

    with tags("specd", f"env:{plan.env}", f"revision:{plan.revision[:12]}"):
        return await reconcile(plan.revision, plan.env, len(plan.changes))


def _local_result_storage() -> Any:
    """Nothing is persisted (persist_result=False), but without a storage Prefect asks the server for its
    default result storage block on every flow run: a second, synchronous HTTP client per cycle."""
    from pathlib import Path

    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path)


def _artifact_key(text: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in text.lower())
