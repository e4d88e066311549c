"""Execute a plan's actions: dependency order, bounded concurrency, retries, failure isolation.

Pure scheduling over an injected `run_action` coroutine, so it is unit-testable without Prefect or any
live system. An action starts once every action it depends on has succeeded; if one of them failed, it
is `blocked` and never runs — a failing resource degrades itself and its dependents only. Transient
errors (`ApplyError(transient=True)`, connection and timeout errors) are retried with exponential backoff.
Deletes run last, in reverse dependency order.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from daemon.core.plan import CHANGING, Action, Op, Plan
from daemon.core.state import ApplyOutcome
from daemon.shared.errors import ApplyError
from daemon.shared.scrub import scrub, scrub_obj

SUCCEEDED, FAILED, BLOCKED = "succeeded", "failed", "blocked"
DEPENDENCY_NOT_READY = "DependencyNotReady"
TRANSIENT_ERRORS = (ConnectionError, TimeoutError)


@dataclass(frozen=True)
class ActionResult:
    key: str
    op: str
    status: str
    message: str
    duration_s: float = 0.0
    attempts: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # why it failed or was blocked (ApplyError.reason, DependencyNotReady); "" on success


RunAction = Callable[[Action], Awaitable[ApplyOutcome]]


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ApplyError):
        return exc.transient
    return isinstance(exc, TRANSIENT_ERRORS)


def _scrubbed(result: ActionResult) -> ActionResult:
    """Action messages reach the log, the journal, status and Prefect: no secret value in any of them."""
    from dataclasses import replace

    message = scrub(result.message)
    return result if message == result.message and not result.details else replace(result, message=message, details=scrub_obj(result.details))


async def execute(
    plan: Plan,
    run_action: RunAction,
    *,
    max_parallel: int = 4,
    retries: int = 2,
    backoff_s: float = 1.0,
    on_result: Callable[[ActionResult], None] | None = None,
) -> list[ActionResult]:
    import asyncio  # here, not at module level: `specd plan` imports this module and runs no loop (~15 ms)

    actions = [a for a in plan.actions if a.op in CHANGING]
    by_key = {a.key: a for a in actions}
    done: dict[str, asyncio.Event] = {a.key: asyncio.Event() for a in actions}
    results: dict[str, ActionResult] = {}
    limiter = asyncio.Semaphore(max_parallel)
    deletes = [a for a in actions if a.op == Op.DELETE]

    def prerequisites(action: Action) -> list[str]:
        if action.op == Op.DELETE:
            # every non-delete first; then deletes of resources that depended on this one
            later = [a.key for a in actions if a.op != Op.DELETE]
            return later + [d.key for d in deletes if action.key in d.depends_on]
        return [k for k in action.depends_on if k in by_key]

    def finish(result: ActionResult) -> None:
        result = _scrubbed(result)
        results[result.key] = result
        done[result.key].set()
        if on_result:
            on_result(result)

    async def one(action: Action) -> None:
        needs = prerequisites(action)
        for key in needs:
            await done[key].wait()
        failed = [k for k in needs if results[k].status != SUCCEEDED and by_key[k].op != Op.DELETE]
        if failed and action.op != Op.DELETE:
            finish(ActionResult(action.key, str(action.op), BLOCKED, f"blocked: {', '.join(sorted(failed))} did not apply", reason=DEPENDENCY_NOT_READY))
            return
        async with limiter:
            started = time.monotonic()
            attempt = 0
            while True:
                attempt += 1
                try:
                    outcome = await run_action(action)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # every failure is recorded as a result, none escapes
                    if is_transient(exc) and attempt <= retries:
                        await asyncio.sleep(backoff_s * (2 ** (attempt - 1)))
                        continue
                    message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ApplyError) else str(exc)
                    reason = exc.reason if isinstance(exc, ApplyError) else type(exc).__name__
                    finish(ActionResult(action.key, str(action.op), FAILED, message, time.monotonic() - started, attempt, reason=reason))
                    return
                finish(ActionResult(action.key, str(action.op), SUCCEEDED, outcome.message, time.monotonic() - started, attempt, dict(outcome.details)))
                return

    await asyncio.gather(*(one(a) for a in actions))
    return [results[a.key] for a in actions]
