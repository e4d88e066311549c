"""The adaptive batcher: concurrent requests share model calls, results go back to their request."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bentos.batching import Arrivals, Batcher


def _model(calls: list[int], delay: float = 0.0):
    lock = threading.Lock()

    def predict(columns):
        with lock:
            calls.append(len(columns["x"]))
        time.sleep(delay)
        return {"prediction": [v * 2 for v in columns["x"]]}

    return predict


def test_concurrent_requests_are_batched_and_answered_in_order():
    calls: list[int] = []

    async def main():
        batcher = Batcher(_model(calls, delay=0.02), max_batch_size=8, max_latency_ms=50)
        results = await asyncio.gather(*(batcher.submit({"x": [i, i + 100]}, 2) for i in range(20)))
        batcher.close()
        return results

    results = asyncio.run(main())
    assert [r["prediction"] for r in results] == [[2 * i, 2 * (i + 100)] for i in range(20)]
    assert sum(calls) == 40
    assert max(calls) <= 8  # never above max_batch_size rows
    assert len(calls) < 20  # fewer model calls than requests: requests were batched


def test_idle_model_answers_a_lone_request_without_waiting():
    calls: list[int] = []

    async def main():
        batcher = Batcher(_model(calls), max_batch_size=64, max_latency_ms=5000)
        started = time.perf_counter()
        result = await batcher.submit({"x": [1]}, 1)
        batcher.close()
        return result, time.perf_counter() - started

    result, elapsed = asyncio.run(main())
    assert result == {"prediction": [2]}
    assert elapsed < 1.0  # nothing else arriving: no wait for max_latency (5 s)


def test_waits_for_requests_that_are_arriving():
    calls: list[int] = []

    async def main():
        arrivals = Arrivals()
        batcher = Batcher(_model(calls), max_batch_size=64, max_latency_ms=2000, arrivals=arrivals)
        arrivals.begin()  # a second request is being parsed

        async def late():
            await asyncio.sleep(0.05)
            arrivals.end()
            return await batcher.submit({"x": [2]}, 1)

        results = await asyncio.gather(batcher.submit({"x": [1]}, 1), late())
        batcher.close()
        return results

    results = asyncio.run(main())
    assert [r["prediction"] for r in results] == [[2], [4]]
    assert calls == [2]  # one model call for both


def test_a_failing_model_fails_its_batch_only():
    state = {"fail": True}

    def predict(columns):
        if state.pop("fail", False):
            raise RuntimeError("boom")
        return {"prediction": columns["x"]}

    async def main():
        batcher = Batcher(predict, max_batch_size=4, max_latency_ms=10)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit({"x": [1]}, 1)
        ok = await batcher.submit({"x": [5]}, 1)
        batcher.close()
        return ok

    assert asyncio.run(main()) == {"prediction": [5]}


def test_retired_batcher_finishes_its_queue_then_ends():
    calls: list[int] = []

    async def main():
        batcher = Batcher(_model(calls, delay=0.02), max_batch_size=1, max_latency_ms=10)
        pending = [asyncio.ensure_future(batcher.submit({"x": [i]}, 1)) for i in range(3)]
        await asyncio.sleep(0)
        batcher.retire()  # as after a routing swap: queued requests still finish on this variant
        results = await asyncio.gather(*pending)
        await asyncio.wait_for(batcher._task, 1)
        return results, batcher._task.done()

    results, ended = asyncio.run(main())
    assert [r["prediction"] for r in results] == [[0], [2], [4]] and ended
