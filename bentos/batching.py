"""Adaptive batching per variant, after validation and routing.

Why not `@bentoml.api(batchable=True)`: BentoML batches *before* our code sees a request, so one
malformed row would fail every request in its batch, rows of different variants would share a batch,
and its dispatcher answers 503 when its latency estimate exceeds `max_latency_ms`. Here each request is
validated and routed first, then queued on its variant's batcher, which never rejects a request.

The policy: a batch starts as soon as the model is free. While it runs, new requests queue and form the
next batch (up to `max_batch_size` rows). When the model is idle and requests are known to be arriving
(accepted by the worker but not yet routed), the batcher waits for them, at most `max_latency_ms` after
its first request. At low load that costs nothing; at high load batches fill by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PredictFn = Callable[[dict[str, list[Any]]], dict[str, list[Any]]]


class Arrivals:
    """Requests accepted by this worker and not yet queued on a batcher (body still being read/validated)."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def begin(self) -> None:
        self.count += 1

    def end(self) -> None:
        self.count -= 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass


@dataclass
class _Job:
    columns: dict[str, list[Any]]
    rows: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int,
        max_latency_ms: float,
        arrivals: Arrivals | None = None,
        on_batch: Callable[[int], None] = lambda rows: None,
    ):
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        self._arrivals = arrivals
        self._on_batch = on_batch
        self._pending: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retired = False

    async def submit(self, columns: dict[str, list[Any]], rows: int) -> dict[str, list[Any]]:
        if self._task is None or self._task.done():
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run())
        job = _Job(columns, rows, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._wake.set()
        return await job.future

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def retire(self) -> None:
        """No new requests will come (a routing swap replaced this batcher): finish the queue, then end.
        Thread-safe: called from the routing watcher."""
        self._retired = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            while not self._pending:
                if self._retired:
                    return
                self._wake.clear()
                await self._wake.wait()
            batch = [self._pending.popleft()]
            rows = batch[0].rows
            deadline = batch[0].enqueued + self.max_latency
            while rows < self.max_batch_size:
                if self._pending:
                    if rows + self._pending[0].rows > self.max_batch_size:
                        break
                    job = self._pending.popleft()
                    batch.append(job)
                    rows += job.rows
                    continue
                remaining = deadline - time.monotonic()
                if self._arrivals is None or self._arrivals.count <= 0 or remaining <= 0:
                    break
                await self._arrivals.wait_change(remaining)
            await self._execute(batch, rows)

    async def _execute(self, batch: list[_Job], rows: int) -> None:
        live = [job for job in batch if not job.future.done()]  # a cancelled client needs no answer
        if not live:
            return
        columns = {name: [v for job in live for v in job.columns[name]] for name in live[0].columns}
        try:
            output = await asyncio.to_thread(self._predict, columns)
        except Exception as exc:  # the model failed: every request of the batch gets the error
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._on_batch(sum(job.rows for job in live))
        start = 0
        for job in live:
            part = {key: values[start:start + job.rows] for key, values in output.items()}
            start += job.rows
            if not job.future.done():
                job.future.set_result(part)


async def predict_unbatched(predict: PredictFn, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return await asyncio.to_thread(predict, columns)
