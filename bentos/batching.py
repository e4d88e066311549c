"""Adaptive batching per variant, after validation and routing.

Why not `@bentoml.api(batchable=True)`: BentoML batches *before* our code sees a request, so one
malformed row would fail every request in its batch, rows of different variants would share a batch,
and its dispatcher answers 503 when its latency estimate exceeds `max_latency_ms`. Here each request is
validated and routed first, then queued on its variant's batcher, which never rejects a request.

The policy: a batch starts as soon as the model is free. While it runs, new requests queue and form the
next batch (up to `max_batch_size` rows). When the model is idle and requests are known to be arriving
(accepted by the worker but not yet routed), the batcher waits for them, at most `max_latency_ms` after
its first request. At low load that costs nothing; at high load batches fill by themselves.

Where a model call runs (`ModelCall`): a thread keeps the event loop free while a slow model computes,
but the hop costs a thread wake-up, a future and a loop wake-up each way (~50-100 us of CPU, as much as a
small tabular model's whole call). So a call runs inline on the event loop while the running estimate of
its duration is under `INLINE_MAX_S`, and in a thread otherwise. The estimate is the shortest wall time
of the last `WINDOW` calls (wall, so a model that waits on I/O or a device counts as slow; the shortest,
so a busy machine's preemptions do not count); both ways keep measuring, so a model (or a batch size)
that turns slow for good moves to the thread within `WINDOW` calls.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PredictFn = Callable[[dict[str, list[Any]]], dict[str, list[Any]]]
INLINE_MAX_S = 0.002  # a call this short blocks the loop for less than a thread hop's wake-ups would add
WINDOW = 16  # recent calls the estimate looks at


class ModelCall:
    """A model's predict function, called inline while it is cheap and in a thread when it is not."""

    def __init__(self, predict: PredictFn, inline_max_s: float = INLINE_MAX_S):
        self._predict = predict
        self.inline_max_s = inline_max_s
        self._recent: deque[float] = deque(maxlen=WINDOW)  # wall seconds of the latest calls
        self.inline_calls = 0
        self.thread_calls = 0

    @property
    def estimate_s(self) -> float | None:
        """The shortest of the recent calls: a busy machine's preemptions stretch some calls, never all."""
        return min(self._recent) if self._recent else None

    @property
    def inline(self) -> bool:
        estimate = self.estimate_s
        return estimate is not None and estimate <= self.inline_max_s

    def _timed(self, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
        started = time.perf_counter()
        try:
            return self._predict(columns)
        finally:
            self._recent.append(time.perf_counter() - started)

    async def __call__(self, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if self.inline:
            self.inline_calls += 1
            return self._timed(columns)
        self.thread_calls += 1
        return await asyncio.to_thread(self._timed, columns)


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
        predict: PredictFn | ModelCall,
        *,
        max_batch_size: int,
        max_latency_ms: float,
        arrivals: Arrivals | None = None,
        on_batch: Callable[[int], None] = lambda rows: None,
    ):
        self._predict = predict if isinstance(predict, ModelCall) else ModelCall(predict)
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
            output = await self._predict(columns)
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


async def predict_unbatched(predict: ModelCall, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return await predict(columns)
