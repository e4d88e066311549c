"""The service's lean request path without a server: buffered metrics write the same samples as direct
updates, BentoML's metrics middleware counts every request once, and a cheap model runs inline."""

from __future__ import annotations

import asyncio
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bentos import bentoml_fixes, metric_buffer
from bentos.batching import ModelCall

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def _samples(metric) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in metric.collect() for s in m.samples
            if not s.name.endswith("_created")}


def test_buffered_children_write_what_direct_updates_write():
    registry = CollectorRegistry()
    direct = (Counter("d_total", "", ["v"], registry=registry), Histogram("d_seconds", "", ["v"], buckets=BUCKETS, registry=registry),
              Gauge("d_gauge", "", ["v"], registry=registry))
    buffered = (Counter("b_total", "", ["v"], registry=registry), Histogram("b_seconds", "", ["v"], buckets=BUCKETS, registry=registry),
                Gauge("b_gauge", "", ["v"], registry=registry))
    values = [0.0005, 0.001, 0.002, 0.05, 0.5, 2.0, 30.0, 0.01, 1.0]
    counter, histogram, gauge = (metric_buffer.buffered(m.labels("a")) for m in buffered)
    assert metric_buffer.buffered(buffered[0].labels("a")) is counter  # one accumulator per child
    for value in values:
        direct[0].labels("a").inc()
        direct[1].labels("a").observe(value)
        direct[2].labels("a").inc()
        counter.inc()
        histogram.observe(value)
        gauge.inc()
    direct[2].labels("a").dec(2)
    gauge.dec(2)
    assert _samples(buffered[0])[("b_total", (("v", "a"),))] == 0  # nothing written before a flush
    metric_buffer.flush()
    for d, b in zip(direct, buffered, strict=True):
        got = {(name.replace("b_", "d_", 1), labels): v for (name, labels), v in _samples(b).items()}
        assert got == _samples(d)
    metric_buffer.flush()  # nothing pending: nothing changes
    assert _samples(buffered[0])[("b_total", (("v", "a"),))] == len(values)


def test_buffered_sums_are_flushed_by_the_running_loop():
    registry = CollectorRegistry()
    counter = metric_buffer.buffered(Counter("loop_total", "", ["v"], registry=registry).labels("x"))

    async def main():
        metric_buffer.ensure_flushing()
        for _ in range(5):
            counter.inc()
        await asyncio.sleep(metric_buffer.FLUSH_S * 2.5)
        return counter.child._value.get()

    assert asyncio.run(main()) == 5


async def _request(app, path: str, status: int = 200) -> None:
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    await app({"type": "http", "path": path, "method": "POST", "headers": []}, receive, send)


def test_bentoml_request_metrics_count_each_request_once():
    from bentoml._internal.context import server_context
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    bentoml_fixes.apply()
    saved = (server_context.service_routes, server_context.bento_name, server_context.bento_version, bentoml_fixes._identity)
    server_context.service_routes = ["/predict"]
    bentoml_fixes.set_identity("lean_svc", "v1")
    try:
        _count_requests(RunnerTrafficMetricsMiddleware)
    finally:
        server_context.service_routes, server_context.bento_name, server_context.bento_version, bentoml_fixes._identity = saved


def _count_requests(RunnerTrafficMetricsMiddleware) -> None:
    in_flight: list[float] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200 if scope["path"] == "/predict" else 404, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    middleware = RunnerTrafficMetricsMiddleware(app, namespace="specd_lean")

    async def main():
        for _ in range(7):
            await _request(middleware, "/predict")
        await _request(middleware, "/nope")
        in_flight.append(sum(s.value for m in middleware.metrics_request_in_progress.collect() for s in m.samples))
        metric_buffer.flush()

    asyncio.run(main())
    total = {(s.labels["endpoint"], s.labels["http_response_code"], s.labels["service_name"], s.labels["service_version"]): s.value
             for m in middleware.metrics_request_total.collect() for s in m.samples if s.name.endswith("_total")}
    assert total[("/predict", "200", "lean_svc", "v1")] == 7 and total[("unknown", "404", "lean_svc", "v1")] == 1
    counts = {s.labels["endpoint"]: s.value for m in middleware.metrics_request_duration.collect() for s in m.samples
              if s.name.endswith("_count")}
    assert counts == {"/predict": 7, "unknown": 1}
    assert in_flight == [0]  # every request that started also ended
    stamps = [s.value for m in middleware.metrics_last_request_timestamp.collect() for s in m.samples]
    assert stamps and abs(max(stamps) - time.time()) < 60


def test_cheap_model_runs_inline_and_slow_one_in_a_thread():
    threads: dict[str, set[str]] = {"cheap": set(), "slow": set()}

    def model(name: str, seconds: float):
        def predict(columns):
            threads[name].add(threading.current_thread().name)
            if seconds:
                time.sleep(seconds)  # waiting counts as slow: it would block the event loop
            return {"prediction": columns["x"]}
        return predict

    async def main():
        loop_thread = threading.current_thread().name
        cheap, slow = ModelCall(model("cheap", 0.0)), ModelCall(model("slow", 0.01))
        for i in range(6):
            assert (await cheap({"x": [i]})) == {"prediction": [i]}
            assert (await slow({"x": [i]})) == {"prediction": [i]}
        return loop_thread, cheap, slow

    loop_thread, cheap, slow = asyncio.run(main())
    assert cheap.thread_calls == 1 and cheap.inline_calls == 5  # the first call measures, in a thread
    assert loop_thread in threads["cheap"]
    assert slow.inline_calls == 0 and loop_thread not in threads["slow"]


def test_a_model_that_turns_slow_leaves_the_event_loop():
    delay = [0.0]

    def predict(columns):
        time.sleep(delay[0])
        return {"prediction": columns["x"]}

    async def main():
        call = ModelCall(predict)
        for _ in range(3):
            await call({"x": [1]})
        assert call.inline
        delay[0] = 0.005
        for _ in range(20):
            await call({"x": [1]})
        return call

    call = asyncio.run(main())
    assert not call.inline and call.thread_calls >= 4


def test_request_ids_are_random_128_bit_hex_and_unique():
    from bentos.request_ids import RequestIds

    ids = RequestIds()
    drawn = [ids() for _ in range(3 * RequestIds.BATCH + 7)]  # across several refills of the pool
    assert len(set(drawn)) == len(drawn)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in drawn)
    assert RequestIds()() not in drawn  # another worker's ids are not a replay of these


def test_a_cancelled_request_is_not_taken_for_a_timeout():
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    bentoml_fixes.apply()
    sent: list[dict] = []

    async def slow(scope, receive, send):
        await asyncio.sleep(5)

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main():
        middleware = TimeoutMiddleware(slow, timeout=60)
        task = asyncio.create_task(middleware({"type": "http", "path": "/predict", "method": "POST", "headers": []}, receive, send))
        await asyncio.sleep(0.05)
        task.cancel()  # the client went away
        try:
            await task
        except asyncio.CancelledError:
            deadlines = middleware._specd_deadlines
            return "cancelled", len(deadlines.pending), len(deadlines.expired)
        return "finished", -1, -1

    assert asyncio.run(main()) == ("cancelled", 0, 0) and sent == []
