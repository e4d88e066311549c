"""The loader's compiled passes against the numpy operations they replace, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from flows.training import kernels, preprocess

SIZES = [*range(1, 300), 1000, 4096, 8191, 8192, 8193, 65_537, 200_003, 1_000_003]


@pytest.mark.parametrize("scale", [1.0, 1e-300, 1e12])
def test_pairwise_sums_equal_numpy_mean_and_std_bit_for_bit(scale: float) -> None:
    rng = np.random.default_rng(int(scale > 1) + 2)
    for size in SIZES:
        values = (rng.normal(size=size) + rng.normal() * 3) * scale
        mean = values.mean(keepdims=True)
        assert kernels.pairwise_sum(values, 0, size) / size == mean[0], size
        squares = kernels.pairwise_squared_deviations(values, float(mean[0]), 0, size)
        assert np.sqrt(squares / size) == values.std(mean=mean), size


def test_an_offset_window_sums_like_a_slice() -> None:
    values = np.random.default_rng(4).normal(size=5000)
    assert kernels.pairwise_sum(values, 1234, 3000) == values[1234:4234].sum()


def test_split_and_gather_split_count_like_numpy() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=50_000)
    values[::97] = np.nan
    positions = rng.permutation(values.size)[:40_000]
    inside, gathered = np.empty(values.size), np.empty(positions.size)
    for low, high in [(-0.1, 0.2), (-np.inf, 0.0), (0.5, np.inf), (np.inf, -np.inf)]:
        below, kept = kernels.split_around(values, low, high, inside)
        expected_below, expected_inside = preprocess._split_around(values, low, high)
        assert below == expected_below and np.array_equal(inside[:kept], expected_inside)
        below, kept = kernels.gather_split(values, positions, gathered, low, high, inside)
        taken = values[positions]
        expected_below, expected_inside = preprocess._split_around(taken, low, high)
        assert np.array_equal(gathered, taken, equal_nan=True)
        assert below == expected_below and np.array_equal(inside[:kept], expected_inside)


def test_scaling_rounds_like_numpy_and_reports_what_is_not_finite() -> None:
    rng = np.random.default_rng(6)
    values = rng.normal(size=10_000) * 1e3
    out = np.empty(values.size, dtype=np.float32)
    assert kernels.scale_into(values, 1.25, 3.5, out)
    assert out.tobytes() == ((values - 1.25) / 3.5).astype(np.float32).tobytes()
    values[17] = 1e300  # overflows float32
    assert not kernels.scale_into(values, 0.0, 1.0, out) and np.isinf(out[17])


def test_tiled_transpose_and_key_folding() -> None:
    rng = np.random.default_rng(7)
    columns_first = rng.normal(size=(37, 1001)).astype(np.float32)
    out = np.empty((1001, 37), dtype=np.float32)
    kernels.transpose_rows(columns_first, out, 0, 500)
    kernels.transpose_rows(columns_first, out, 500, 1001)
    assert np.array_equal(out, columns_first.T)
    keys = rng.integers(0, 2**63, size=1000, dtype=np.uint64)
    bits = rng.integers(0, 2**63, size=600, dtype=np.uint64)
    expected = keys.copy()
    expected[100:700] = (expected[100:700] ^ bits) * np.uint64(0x9E3779B97F4A7C15)
    kernels.fold_keys(keys, 100, bits, np.uint64(0x9E3779B97F4A7C15))
    assert np.array_equal(keys, expected)


def test_thread_count_follows_omp_num_threads_and_row_ranges_cover_every_row(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert kernels.loader_threads() == 3
    ranges = kernels.row_ranges(100_000)
    assert len(ranges) == 3 and ranges[0][0] == 0 and ranges[-1][1] == 100_000
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert kernels.row_ranges(1000) == [(0, 1000)]  # too few rows to share out
    assert kernels.row_ranges(0) == []
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert kernels.loader_threads() == kernels.MAX_THREADS


def test_an_error_in_a_thread_reaches_the_caller() -> None:
    def work(share: int) -> None:
        if share == 1:
            raise ValueError("share 1 failed")

    with pytest.raises(ValueError, match="share 1 failed"):
        kernels.on_threads(work, [0, 1])


def test_the_two_pass_gather_equals_a_direct_gather_and_refuses_repeated_rows() -> None:
    rng = np.random.default_rng(9)
    values = rng.normal(size=30_000)
    chunks = [values[:12_345], values[12_345:]]
    for positions in (rng.permutation(values.size), np.sort(rng.permutation(values.size)[:20_000]), rng.permutation(values.size)[:7]):
        slot, dest, ok = kernels.scatter_plan(positions, values.size, 8)
        assert ok
        buckets, out, inside = np.empty(positions.size + 1), np.empty(positions.size), np.empty(positions.size)
        start = 0
        for chunk in chunks:
            kernels.scatter_to_buckets(chunk, start, slot, buckets)
            start += chunk.size
        below, kept = kernels.scatter_split(buckets, dest, out, -0.1, 0.1, inside)
        assert np.array_equal(out, values[positions])
        expected_below, expected_inside = preprocess._split_around(values[positions], -0.1, 0.1)
        assert below == expected_below and np.array_equal(np.sort(inside[:kept]), np.sort(expected_inside))
    assert not kernels.scatter_plan(np.array([3, 1, 3]), 10, 8)[2]
