"""One event loop and one Prefect client for every reconcile cycle of this process (issue 14 item 2).

`asyncio.run` per cycle built a new loop, a new default thread pool and — because Prefect's client
is bound to the loop it was opened on — a new `PrefectClient` (httpx pool, TCP connect, the API
version handshake) for every flow run: ~0.1 s of each cycle's Prefect overhead. Here one
`asyncio.Runner` lives as long as the process; the first cycle opens a client on it and enters it as
Prefect's `AsyncClientContext` around every later flow run, which the flow and task engines then use
instead of opening their own. A cycle runs on the calling thread, as before (signal handling and
`KeyboardInterrupt` behave as with `asyncio.run`); cycles never overlap (a lock), and a loop or client
that broke (the server restarted, a cycle was interrupted) is thrown away and made again next time.
Closed at exit. Prefect is imported inside the functions only.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
_runner: asyncio.Runner | None = None
_client: Any = None  # the AsyncClientContext whose PrefectClient is open on _runner's loop
_client_url: str | None = None  # the API it talks to: a different PREFECT_API_URL gets a new client


def run(make: Callable[[], Awaitable[T]]) -> T:
    """`await make()` on the shared loop, inside the shared Prefect client's context."""
    global _runner
    with _lock:
        if _runner is None:
            _runner = asyncio.Runner()
        runner = _runner
        try:
            return runner.run(_with_client(make))
        except BaseException:
            _discard()  # interrupted or failed: the next cycle starts from a fresh loop and client
            raise


async def _with_client(make: Callable[[], Awaitable[T]]) -> T:
    context = await _open_client()
    with context:  # sets Prefect's client context var only: the client stays open after the cycle
        return await make()


async def _open_client() -> Any:
    """The shared `AsyncClientContext`, its client open on the running loop."""
    global _client, _client_url
    url = os.environ.get("PREFECT_API_URL")
    if _client is not None and url == _client_url:
        return _client
    if _client is not None:
        await _close_client()
    from prefect.context import AsyncClientContext

    context = AsyncClientContext()
    await context.__aenter__()  # opens the client and checks the API version, as Prefect's own would
    context.__exit__()  # ...but leaves the context var: each cycle enters it (`with`), the client stays open
    _client, _client_url = context, url
    return context


async def _close_client() -> None:
    global _client, _client_url
    context, _client, _client_url = _client, None, None
    if context is not None:
        try:
            await context.client.__aexit__(None, None, None)
        except Exception:  # best effort: the connection is gone anyway
            log.debug("closing the shared Prefect client failed", exc_info=True)


def _discard() -> None:
    """Close the client and the loop (under _lock, or at exit)."""
    global _runner
    runner, _runner = _runner, None
    if runner is None:
        return
    try:
        if _client is not None:
            runner.run(_close_client())
    except BaseException:  # the loop itself may be what broke
        log.debug("closing the shared Prefect client failed", exc_info=True)
    finally:
        globals()["_client"] = None
        try:
            runner.close()
        except BaseException:
            log.debug("closing the shared event loop failed", exc_info=True)


def close(timeout: float = -1) -> None:
    """Close the shared client and loop (the next `run` makes new ones); at exit, only when no cycle
    holds them within `timeout` seconds (a cycle still running in a daemon thread is left alone)."""
    if not _lock.acquire(timeout=timeout):
        return
    try:
        _discard()
    finally:
        _lock.release()


atexit.register(close, 5.0)
