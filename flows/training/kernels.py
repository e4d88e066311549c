"""Compiled passes of the training loader, each over one column held in cache, with numpy's own bits.

Why: with numpy, loading a wide table is a string of whole-column operations (gather into canonical
order, mean, deviations, squares, sums, scaling, rounding), each a pass through memory and most with a
temporary. These numba functions do the same arithmetic in fewer passes over a column that stays in
cache, and release the GIL, so `flows.training.fused` runs columns on several threads.

Exactness: `pairwise_sum` is numpy's pairwise summation for a contiguous float64 array (eight
accumulators, blocks of 128, halves rounded down to multiples of eight), and `pairwise_squared_deviations`
the same summation over `(x - mean) * (x - mean)`, so `sum / n` and `sqrt(squares / n)` are bit-identical
to `np.mean` and `np.std(mean=...)` — tests/unit/test_loader_kernels.py checks this for every size from
1 to 300 and for sizes up to 10⁶. No fastmath: no reassociation, no fused multiply-add.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numba import njit

MAX_THREADS = 8
MIN_ROWS_PER_THREAD = 16_384  # below this a thread costs more than it saves


def loader_threads() -> int:
    """How many threads the loader may use: `OMP_NUM_THREADS` when set (torchrun sets it to 1 per rank),
    else the CPUs this process may run on; at most 8."""
    configured = os.environ.get("OMP_NUM_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return min(int(configured), MAX_THREADS)
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, MAX_THREADS))


def row_ranges(rows: int) -> list[tuple[int, int]]:
    """[start, stop) ranges that share `rows` out over the loader's threads."""
    parts = max(1, min(loader_threads(), rows // MIN_ROWS_PER_THREAD))
    size = math.ceil(rows / parts) if rows else 0
    return [(start, min(rows, start + size)) for start in range(0, rows, size)] if rows else []


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool): kept between loads
_POOL_LOCK = threading.Lock()
_THREAD_PREFIX = "specd-loader"


def _pool(workers: int) -> ThreadPoolExecutor:
    """The loader's thread pool, made once per process and size (a forked child makes its own)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < workers:
            # a smaller pool is left to its idle threads, not shut down: another loader may be using it
            _POOL = (os.getpid(), workers, ThreadPoolExecutor(workers, thread_name_prefix=_THREAD_PREFIX))
        return _POOL[2]


def on_threads(work: Callable[[Any], None], shares: Sequence[Any]) -> None:
    """`work(share)` for every share, side by side on the loader's threads (the kernels release the GIL);
    here, one after another, when there is one share or when called from a loader thread. An exception in
    any share is raised."""
    if len(shares) <= 1 or threading.current_thread().name.startswith(_THREAD_PREFIX):
        for share in shares:
            work(share)
        return
    for _ in _pool(len(shares)).map(work, shares):
        pass


@njit(nogil=True, cache=True)
def pairwise_sum(values: np.ndarray, start: int, count: int) -> float:  # pragma: no cover - compiled
    """numpy's `pairwise_sum` over values[start:start + count]."""
    if count < 8:
        total = 0.0
        for i in range(start, start + count):
            total += values[i]
        return total
    if count <= 128:
        r0, r1, r2, r3 = values[start], values[start + 1], values[start + 2], values[start + 3]
        r4, r5, r6, r7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
        i, stop = 8, count - count % 8
        while i < stop:
            at = start + i
            r0 += values[at]
            r1 += values[at + 1]
            r2 += values[at + 2]
            r3 += values[at + 3]
            r4 += values[at + 4]
            r5 += values[at + 5]
            r6 += values[at + 6]
            r7 += values[at + 7]
            i += 8
        total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < count:
            total += values[start + i]
            i += 1
        return total
    half = count // 2
    half -= half % 8
    return pairwise_sum(values, start, half) + pairwise_sum(values, start + half, count - half)


@njit(nogil=True, cache=True)
def pairwise_squared_deviations(values: np.ndarray, mean: float, start: int, count: int) -> float:  # pragma: no cover
    """numpy's `pairwise_sum` over (values - mean)², each square rounded as `np.multiply(x, x)` rounds it."""
    if count < 8:
        total = 0.0
        for i in range(start, start + count):
            d = values[i] - mean
            total += d * d
        return total
    if count <= 128:
        d0, d1, d2, d3 = values[start] - mean, values[start + 1] - mean, values[start + 2] - mean, values[start + 3] - mean
        d4, d5, d6, d7 = values[start + 4] - mean, values[start + 5] - mean, values[start + 6] - mean, values[start + 7] - mean
        r0, r1, r2, r3, r4, r5, r6, r7 = d0 * d0, d1 * d1, d2 * d2, d3 * d3, d4 * d4, d5 * d5, d6 * d6, d7 * d7
        i, stop = 8, count - count % 8
        while i < stop:
            at = start + i
            d0, d1, d2, d3 = values[at] - mean, values[at + 1] - mean, values[at + 2] - mean, values[at + 3] - mean
            d4, d5, d6, d7 = values[at + 4] - mean, values[at + 5] - mean, values[at + 6] - mean, values[at + 7] - mean
            r0 += d0 * d0
            r1 += d1 * d1
            r2 += d2 * d2
            r3 += d3 * d3
            r4 += d4 * d4
            r5 += d5 * d5
            r6 += d6 * d6
            r7 += d7 * d7
            i += 8
        total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < count:
            d = values[start + i] - mean
            total += d * d
            i += 1
        return total
    half = count // 2
    half -= half % 8
    return (pairwise_squared_deviations(values, mean, start, half)
            + pairwise_squared_deviations(values, mean, start + half, count - half))


@njit(nogil=True, cache=True)
def gather(source: np.ndarray, positions: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """out[i] = source[positions[i]] (positions are in range: the caller's own row indices)."""
    for i in range(positions.size):
        out[i] = source[positions[i]]


@njit(nogil=True, cache=True)
def gather_split(source: np.ndarray, positions: np.ndarray, out: np.ndarray, low: float, high: float,
                 inside: np.ndarray) -> tuple[int, int]:  # pragma: no cover - compiled
    """out[i] = source[positions[i]], and in the same pass what `split_around` returns for them: (values below
    `low` or NaN, values in [low, high] copied to the front of `inside`)."""
    below, kept = 0, 0
    for i in range(positions.size):
        value = source[positions[i]]
        out[i] = value
        at_least = value >= low
        below += not at_least
        inside[kept] = value
        kept += at_least & (value <= high)
    return below, kept


@njit(nogil=True, cache=True)
def is_identity(rows: np.ndarray) -> bool:  # pragma: no cover - compiled
    """rows[i] == i for every i (stops at the first that is not)."""
    for i in range(rows.size):
        if rows[i] != i:
            return False
    return True


@njit(nogil=True, cache=True)
def scatter_plan(positions: np.ndarray, stored_rows: int, shift: int) -> tuple[np.ndarray, np.ndarray, bool]:  # pragma: no cover
    """The two-pass gather of a tall column (`scatter_to_buckets` then `scatter_split`): (slot, dest, ok).

    Output rows are cut into buckets of 2**shift rows (a bucket's values fit in L2). Stored row q, the
    output row i that selects it, goes to slot[q] in a bucket-ordered buffer (within a bucket, in stored
    order; unselected rows to the spare slot at the end), and dest[k] is the output row of slot k. Both
    passes then stream through memory instead of missing the cache on every value. ok is False when
    `positions` repeats a row (the caller gathers directly)."""
    count = positions.size
    output_of = np.full(stored_rows, -1, dtype=np.int32)  # the caller keeps rows under 2**31
    for i in range(count):
        if output_of[positions[i]] >= 0:
            return np.empty(0, np.int32), np.empty(0, np.int32), False
        output_of[positions[i]] = i
    buckets = (count + (1 << shift) - 1) >> shift
    cursor = np.empty(buckets, dtype=np.int64)
    for bucket in range(buckets):
        cursor[bucket] = bucket << shift
    slot = np.empty(stored_rows, dtype=np.int32)
    dest = np.empty(count, dtype=np.int32)
    for q in range(stored_rows):
        i = output_of[q]
        if i >= 0:
            k = cursor[i >> shift]
            cursor[i >> shift] = k + 1
            slot[q] = k
            dest[k] = i
        else:
            slot[q] = count
    return slot, dest, True


@njit(nogil=True, cache=True)
def scatter_to_buckets(chunk: np.ndarray, start: int, slot: np.ndarray, buckets: np.ndarray) -> None:  # pragma: no cover
    """First pass of the two-pass gather: buckets[slot[start + q]] = chunk[q], reading the stored chunk in order."""
    for q in range(chunk.size):
        buckets[slot[start + q]] = chunk[q]


@njit(nogil=True, cache=True)
def scatter_split(buckets: np.ndarray, dest: np.ndarray, out: np.ndarray, low: float, high: float,
                  inside: np.ndarray) -> tuple[int, int]:  # pragma: no cover - compiled
    """Second pass: out[dest[k]] = buckets[k] (each bucket's writes stay in cache), and what `split_around`
    returns for these values."""
    below, kept = 0, 0
    for k in range(dest.size):
        value = buckets[k]
        out[dest[k]] = value
        at_least = value >= low
        below += not at_least
        inside[kept] = value
        kept += at_least & (value <= high)
    return below, kept


@njit(nogil=True, cache=True)
def pack_rows(keys: np.ndarray, bits: int, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """out[i] = the key's high bits with the row index i in its low `bits` bits (sorting these values sorts
    the rows by the keys' high bits, ties by row)."""
    high = ~np.uint64((1 << bits) - 1)
    for i in range(keys.size):
        out[i] = (keys[i] & high) | np.uint64(i)


@njit(nogil=True, cache=True)
def unpack_rows(packed: np.ndarray, bits: int, order: np.ndarray) -> int:  # pragma: no cover - compiled
    """order[i] = the row index in sorted packed value i; returns how many adjacent values have equal high bits."""
    low = np.uint64((1 << bits) - 1)
    equal = 0
    for i in range(packed.size):
        order[i] = np.int64(packed[i] & low)
        if i and (packed[i] ^ packed[i - 1]) <= low:
            equal += 1
    return equal


@njit(nogil=True, cache=True)
def fold_keys(keys: np.ndarray, start: int, bits: np.ndarray, multiplier: np.uint64) -> None:  # pragma: no cover
    """keys[start + i] = (keys[start + i] ^ bits[i]) * multiplier, wrapping: one folding step of the row key."""
    for i in range(bits.size):
        keys[start + i] = (keys[start + i] ^ bits[i]) * multiplier


@njit(nogil=True, cache=True)
def split_around(values: np.ndarray, low: float, high: float, inside: np.ndarray) -> tuple[int, int]:  # pragma: no cover
    """(values below `low` or NaN, values in [low, high] copied to the front of `inside`): one pass of the
    median's bounded selection, as `preprocess._split_around` counts them."""
    below, kept = 0, 0
    for i in range(values.size):  # no branches: about half the values are below `low`, at random
        value = values[i]
        at_least = value >= low
        below += not at_least
        inside[kept] = value
        kept += at_least & (value <= high)
    return below, kept


@njit(nogil=True, cache=True)
def scale_into(values: np.ndarray, center: float, scale: float, out: np.ndarray) -> bool:  # pragma: no cover
    """out[i] = float32((values[i] - center) / scale), rounded once as numpy's float64 → float32 cast rounds;
    True when every output is finite."""
    bad = 0
    for i in range(values.size):
        result = np.float32((values[i] - center) / scale)
        out[i] = result
        bad |= (result - result) != 0  # NaN for NaN and ±inf, 0 for every finite value
    return bad == 0


@njit(nogil=True, cache=True)
def transpose_rows(columns_first: np.ndarray, out: np.ndarray, row_start: int, row_stop: int) -> None:  # pragma: no cover
    """out[r, c] = columns_first[c, r] for rows [row_start, row_stop), in 16 × 16 tiles (a cache line of
    float32 each way)."""
    width = columns_first.shape[0]
    for r0 in range(row_start, row_stop, 16):
        r1 = min(r0 + 16, row_stop)
        for c0 in range(0, width, 16):
            c1 = min(c0 + 16, width)
            for c in range(c0, c1):
                for r in range(r0, r1):
                    out[r, c] = columns_first[c, r]
