"""The one retry policy for I/O (Grafana's API, Delta commit conflicts, ...): tenacity, exponential backoff.

Plan actions are retried by Prefect (task retries, visible as AwaitingRetry in the UI); this is for the
I/O *inside* one step: a short, bounded number of attempts with `backoff_s * 2**n` between them, retrying
only the exceptions the caller names as transient and re-raising the last one unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

T = TypeVar("T")


def call_with_retries(function: Callable[[], T], *, attempts: int, backoff_s: float,
                      retry_on: type[BaseException] | tuple[type[BaseException], ...], max_backoff_s: float = 30.0) -> T:
    """`function()` up to `attempts` times while it raises `retry_on`; the last exception propagates."""
    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=backoff_s, min=0, max=max_backoff_s),
        retry=retry_if_exception_type(retry_on),
        reraise=True,
    )
    return retrying(function)
