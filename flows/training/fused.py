"""Fit the preprocessing on the training rows and transform them, column by column in cache, on threads.

Why: `preprocess.fit` then `preprocess.transform` over gathered columns reads every numeric column from
memory about eight times (the gather's write, the mean, the deviations, their squares and sum, the median's
passes, the scaling, the rounding) and then transposes the whole matrix. Here each numeric column
without nulls is gathered from its stored chunks into a buffer that stays in cache, and its mean, its
standard deviation, its median and its float32 output all come from that buffer
(`flows.training.kernels`, which release the GIL); the columns are shared out over threads, and the
column-major result is transposed in cache-sized tiles, by row ranges on the same threads. A tall table's
column (more stored rows than a core's L2 holds) is gathered in two streaming passes through L2-sized
buckets instead (`Columns.scatter_plan`), as a random gather from memory would miss on every value.

Same bytes: the state and the matrix are exactly `preprocess.fit(columns, …)` and
`preprocess.transform(state, columns)` (tests/unit/test_fused_fit_transform.py): the sums are numpy's own
pairwise sums, the median the same exact selection, the rounding the same cast. A column this path does
not cover — strings, nulls, a NaN or an infinity, robust scaling, an unknown option — goes through
`preprocess`'s own functions, which also raise its errors.

Threads: `kernels.loader_threads()` (`OMP_NUM_THREADS` when set, else the CPUs this process may run on, at
most 8).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from flows.training import kernels, preprocess
from flows.training.data import Columns, _block

FAST_IMPUTE = ("median", "mean", "zero", "none")
FAST_SCALE = ("standard", "minmax", "none")


def fit_transform(columns: Mapping[str, Any], schema: Mapping[str, str],
                  options: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], np.ndarray]:
    """(state, matrix): `preprocess.fit` and `preprocess.transform` of the same columns, in one go."""
    if not isinstance(columns, Columns) or columns.rows == 0:
        state = preprocess.fit(columns, schema, options)
        return state, preprocess.transform(state, columns)
    fitted: list[dict[str, Any] | None] = []
    fast: list[tuple[int, str, list[np.ndarray]]] = []  # (index in the state, name, stored chunks)
    for name, dtype in schema.items():
        opts = options[name]
        stored = columns.stored(name) if dtype in preprocess.NUMERIC_TYPES else None
        if stored is not None and opts.get("impute", "median") in FAST_IMPUTE and opts.get("scale", "standard") in FAST_SCALE:
            fast.append((len(fitted), name, stored))
            fitted.append(None)
        else:
            fitted.append(preprocess.fit({name: columns[name]}, {name: dtype}, {name: opts})["columns"][0])

    def column_pass(index: int, name: str, stored: list[np.ndarray], out: np.ndarray, buffers: _Buffers) -> None:
        fitted[index] = _fit_transform_column(columns, name, schema[name], options[name], stored, out, buffers)

    widths = [1 if state is None else int(state["width"]) for state in fitted]
    matrix = _assemble(columns, widths, fitted, fast, column_pass)
    states = [state for state in fitted if state is not None]
    return {"columns": states, "output_dim": int(sum(c["width"] for c in states))}, matrix


def transform(state: Mapping[str, Any], columns: Mapping[str, Any]) -> np.ndarray:
    """`preprocess.transform(state, columns)`: the numeric columns without nulls gathered and scaled in one
    pass each, on threads; the others by preprocess, which also raises its errors."""
    fitted = list(state["columns"])
    if not isinstance(columns, Columns) or columns.rows == 0 or not fitted or any(c["name"] not in columns for c in fitted):
        return preprocess.transform(state, columns)
    fast = [(index, column["name"], stored) for index, column in enumerate(fitted)
            if column["kind"] == "numeric" and (stored := columns.stored(column["name"])) is not None]

    def column_pass(index: int, name: str, stored: list[np.ndarray], out: np.ndarray, buffers: _Buffers) -> None:
        values = _gathered(columns, stored, buffers)
        if not kernels.scale_into(values, fitted[index]["center"], fitted[index]["scale"], out):
            preprocess._numeric_into(fitted[index], values, out, np.empty(values.size))  # NaN to fill, or overflow

    compiled = {index for index, _, _ in fast}
    by_preprocess = [None if index in compiled else column for index, column in enumerate(fitted)]
    return _assemble(columns, [int(c["width"]) for c in fitted], by_preprocess, fast, column_pass)


def _assemble(columns: Columns, widths: list[int], by_preprocess: list[dict[str, Any] | None],
              fast: list[tuple[int, str, list[np.ndarray]]], column_pass: Callable[..., None]) -> np.ndarray:
    """The row-major float32 matrix: the states in `by_preprocess` transformed by preprocess, the `fast`
    columns by `column_pass` on the loader's threads (each with its own buffers), then one tiled transpose."""
    rows = columns.rows
    starts = np.cumsum([0, *widths])
    columns_first = _block(int(starts[-1]), rows, np.dtype(np.float32))
    for index, state in enumerate(by_preprocess):
        if state is not None:
            columns_first[starts[index]:starts[index + 1]] = preprocess.transform(
                {"columns": [state], "output_dim": state["width"]}, {state["name"]: columns[state["name"]]}).T
    workers = min(kernels.loader_threads(), max(1, len(fast)))
    if fast:
        columns.scatter_plan()  # made once, before the threads share it

    def run_share(share: list[tuple[int, str, list[np.ndarray]]]) -> None:
        buffers = _Buffers(columns.table.frame.height, rows)
        for index, name, stored in share:
            column_pass(index, name, stored, columns_first[starts[index]], buffers)

    kernels.on_threads(run_share, [share for share in (fast[i::workers] for i in range(workers)) if share])
    out = _block(rows, int(starts[-1]), np.dtype(np.float32))
    kernels.on_threads(lambda bounds: kernels.transpose_rows(columns_first, out, *bounds), kernels.row_ranges(rows))
    return out


class _Buffers:
    """One thread's scratch, made on first use: the stored column made contiguous, the bucket-ordered
    values of the two-pass gather, the gathered rows, the median's middle."""

    def __init__(self, stored_rows: int, rows: int):
        self.sizes = {"stored": stored_rows, "buckets": rows + 1, "gathered": rows, "inside": rows}
        self.arrays: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> np.ndarray:
        sizes, arrays = self.__dict__["sizes"], self.__dict__["arrays"]
        if name not in sizes:
            raise AttributeError(name)
        if name not in arrays:
            arrays[name] = np.empty(sizes[name], dtype=np.float64)
        return arrays[name]


def _fit_transform_column(columns: Columns, name: str, dtype: str, opts: Mapping[str, Any], stored: list[np.ndarray],
                          out: np.ndarray, buffers: _Buffers) -> dict[str, Any]:
    """One numeric column without nulls: its fitted state (as `preprocess.fit` makes it), its output row written.

    One pass gathers the rows and splits them around the median's sample bounds; the sums and the output
    come from the gathered buffer (in cache, for a column that fits)."""
    rows = columns.rows
    impute, scale = opts.get("impute", "median"), opts.get("scale", "standard")
    values, split = _selected(columns, stored, buffers, preprocess.sample_step(rows) if impute == "median" else None)
    mean = kernels.pairwise_sum(values, 0, rows) / rows
    if not math.isfinite(mean):  # a NaN or an infinity: preprocess's own path
        state = preprocess.fit({name: values}, {name: dtype}, {name: opts})["columns"][0]
        out[...] = preprocess.transform({"columns": [state], "output_dim": 1}, {name: values})[:, 0]
        return state
    fill: float | None = {"none": None, "mean": mean, "zero": 0.0}.get(impute)
    if impute == "median":
        fill = preprocess.median_of_middle(values, rows, *preprocess.middle_after_split(values, rows, True, split))
    center, spread = 0.0, 1.0
    if scale == "standard":
        center, spread = mean, math.sqrt(kernels.pairwise_squared_deviations(values, mean, 0, rows) / rows)
    elif scale == "minmax":
        low, high = float(values.min()), float(values.max())
        center, spread = low, high - low
    state = {"impute": fill, "center": float(center), "scale": spread if spread > 1e-12 else 1.0, "width": 1, "kind": "numeric"}
    if not kernels.scale_into(values, state["center"], state["scale"], out):
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return {"name": name, "dtype": dtype, **state}


def _selected(columns: Columns, stored: list[np.ndarray], buffers: _Buffers,
              median_step: int | None) -> tuple[np.ndarray, tuple[int, np.ndarray] | None]:
    """(the selected rows of a stored column, in order; the median's split of them, when `median_step` asks
    for one and the sample gives bounds): one pass over the column, or two streaming passes for a tall one.

    The sample only bounds the search (the median is exact whatever it is): a strided sample of the
    selected values, in whatever order the pass holds them."""
    rows, positions, plan = columns.rows, columns.positions, columns.scatter_plan()
    if plan is not None:  # tall: stored order → buckets → output order
        slot, dest = plan
        start = 0
        for chunk in stored:
            kernels.scatter_to_buckets(chunk.astype(np.float64, copy=False), start, slot, buffers.buckets)
            start += chunk.size
        bounds = preprocess.sample_bounds(buffers.buckets[:rows:median_step], rows) if median_step else None
        low, high = bounds if bounds is not None else (np.inf, -np.inf)  # no bounds: nothing is kept
        below, kept = kernels.scatter_split(buffers.buckets, dest, buffers.gathered, low, high, buffers.inside)
        return buffers.gathered, (below, buffers.inside[:kept]) if bounds is not None else None
    source = _contiguous(stored, buffers, warm=positions is not None)
    bounds = None
    if median_step:
        bounds = preprocess.sample_bounds(source[::median_step] if positions is None else source[positions[::median_step]], rows)
    low, high = bounds if bounds is not None else (np.inf, -np.inf)
    if positions is None:
        values = source
        below, kept = kernels.split_around(values, low, high, buffers.inside) if bounds is not None else (0, 0)
    else:
        values = buffers.gathered
        below, kept = kernels.gather_split(source, positions, values, low, high, buffers.inside)
    return values, (below, buffers.inside[:kept]) if bounds is not None else None


def _contiguous(stored: list[np.ndarray], buffers: _Buffers, warm: bool = False) -> np.ndarray:
    """The stored column as one float64 array: its own chunk, or the chunks copied into the thread's buffer.
    `warm`: copied even when it is one chunk, for a gather to read it at random from cache rather than from
    memory (the copy streams; the gather's reads would each miss)."""
    if len(stored) == 1 and stored[0].dtype == np.float64 and not warm:
        return stored[0]
    return np.concatenate(stored, out=buffers.stored, casting="same_kind")


def _gathered(columns: Columns, stored: list[np.ndarray], buffers: _Buffers) -> np.ndarray:
    """The selected rows of a stored column, in order (the stored column itself when every row is selected)."""
    return _selected(columns, stored, buffers, None)[0]
