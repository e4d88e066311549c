"""Prometheus updates of the request path, summed in memory and written a few times a second.

Why: a service worker runs prometheus_client in multiprocess mode (each worker writes its own mmap
file, `/metrics` merges them), where every update takes a lock, checks the pid and packs a value into
the file — and one request made eleven of them (BentoML's request metrics and ours), about 8 % of its
CPU. Here each labelled child gets a small in-memory accumulator on the event loop; every `FLUSH_S` the
sums are written with one update per touched value. Prometheus (scraping every 15 s or so) sees the
same counts at most `FLUSH_S` later; a scrape that reaches this worker flushes it first; a graceful
stop flushes; a worker killed with SIGKILL loses at most the last `FLUSH_S` of them.

Only the event loop's thread updates or flushes an accumulator, so no lock is needed. A child whose
class does not have the shape this relies on is returned as it is (written per update, as before).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from bisect import bisect_left
from typing import Any

FLUSH_S = 0.25

_wrappers: dict[int, Any] = {}  # id(child) -> its accumulator (children live as long as their metric)
_loop: asyncio.AbstractEventLoop | None = None


class _Counter:
    __slots__ = ("child", "pending")

    def __init__(self, child: Any) -> None:
        self.child, self.pending = child, 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.pending += amount

    def flush(self) -> None:
        if self.pending:
            amount, self.pending = self.pending, 0.0
            self.child.inc(amount)


class _Gauge:
    __slots__ = ("child", "delta", "stamp")

    def __init__(self, child: Any) -> None:
        self.child, self.delta, self.stamp = child, 0.0, None

    def inc(self, amount: float = 1.0) -> None:
        self.delta += amount

    def dec(self, amount: float = 1.0) -> None:
        self.delta -= amount

    def set_to_current_time(self) -> None:
        self.stamp = time.time()

    def flush(self) -> None:
        if self.stamp is not None:
            stamp, self.stamp = self.stamp, None
            self.child.set(stamp)
        if self.delta:
            delta, self.delta = self.delta, 0.0
            self.child.inc(delta)


class _Histogram:
    __slots__ = ("child", "bounds", "counts", "total", "dirty")

    def __init__(self, child: Any) -> None:
        self.child, self.bounds = child, list(child._upper_bounds)
        self.counts, self.total, self.dirty = [0] * len(self.bounds), 0.0, False

    def observe(self, amount: float) -> None:
        if amount == amount:  # NaN falls in no bucket (as in prometheus_client)
            self.counts[bisect_left(self.bounds, amount)] += 1  # the first bucket whose bound >= amount
        self.total += amount
        self.dirty = True

    def flush(self) -> None:
        if not self.dirty:
            return
        counts, total = self.counts, self.total
        self.counts, self.total, self.dirty = [0] * len(self.bounds), 0.0, False
        self.child._sum.inc(total)
        for bucket, count in zip(self.child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


def buffered(child: Any) -> Any:
    """The accumulator of a labelled child (one per child), or the child itself if it cannot be buffered."""
    wrapper = _wrappers.get(id(child))
    if wrapper is not None and wrapper.child is child:
        return wrapper
    kind = getattr(child, "_type", None)
    if kind == "counter" and hasattr(child, "inc"):
        wrapper = _Counter(child)
    elif kind == "gauge" and hasattr(child, "set") and hasattr(child, "inc"):
        wrapper = _Gauge(child)
    elif kind == "histogram" and all(hasattr(child, a) for a in ("_upper_bounds", "_buckets", "_sum")) \
            and len(child._buckets) == len(child._upper_bounds) and child._upper_bounds[-1] == float("inf"):
        wrapper = _Histogram(child)
    else:
        return child
    _wrappers[id(child)] = wrapper
    return wrapper


def flush() -> None:
    """Write every pending sum now (the event loop's thread, or any thread once serving has stopped)."""
    for wrapper in list(_wrappers.values()):
        wrapper.flush()


def _tick(loop: asyncio.AbstractEventLoop) -> None:
    flush()
    if loop is _loop and not loop.is_closed():
        loop.call_later(FLUSH_S, _tick, loop, context=contextvars.Context())


def ensure_flushing() -> None:
    """Schedule the periodic flush on the running event loop (cheap when it already is)."""
    global _loop
    loop = asyncio.get_running_loop()
    if loop is not _loop:
        flush()  # sums left by a loop that ended
        _loop = loop
        # an empty context: scheduled from a request, the handle would keep that request's context alive
        loop.call_later(FLUSH_S, _tick, loop, context=contextvars.Context())
