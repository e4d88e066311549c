"""Synthetic sources: a seeded generator of large inputs, streamed in batches (benchmarks, load tests).

Values depend only on (seed, batch index, column index), so the same spec always yields the same rows
and any batch can be regenerated without the ones before it. Memory stays at one batch whatever `rows`
is. `generate(...)` is also usable as a callable source (`_target_: flows.tables.sources.synthetic.generate`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flows.tables.sources import SourceContext

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


CALLABLE_SOURCES = ("generate",)  # what a `callable` source may name here (the rest are reader internals)


def _column(spec: Any, rng: np.random.Generator, start_row: int, n: int) -> pa.Array:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = spec.kind
    if kind == "sequence":
        array = pa.array(np.arange(start_row, start_row + n, dtype=np.int64) + int(spec.low))
    elif kind == "int":
        array = pa.array(rng.integers(int(spec.low), int(spec.high), size=n, endpoint=True, dtype=np.int64))
    elif kind == "float":
        array = pa.array(rng.uniform(spec.low, spec.high, size=n))
    elif kind == "normal":
        array = pa.array(rng.normal(spec.mean, spec.std, size=n))
    elif kind == "choice":
        array = pa.array(spec.values).take(pa.array(rng.integers(0, len(spec.values), size=n)))
    elif kind == "bool":
        array = pa.array(rng.random(size=n) < 0.5)
    elif kind == "timestamp":
        base = np.datetime64(spec.start, "us")
        offsets = (np.arange(start_row, start_row + n, dtype=np.int64) * int(spec.step_s * 1_000_000)).astype(
            "timedelta64[us]"
        )
        array = pa.array(base + offsets, type=pa.timestamp("us"))
    elif kind == "string":
        ids = pc.cast(pa.array(rng.integers(0, 10**9, size=n, dtype=np.int64)), pa.string())
        array = pc.binary_join_element_wise(spec.prefix, ids, "") if spec.prefix else ids
    else:  # pragma: no cover - the spec model's Literal rules this out
        raise ValueError(f"unknown synthetic column kind {kind!r}")
    if spec.null_fraction > 0:
        mask = pa.array(rng.random(size=n) < spec.null_fraction)
        array = pc.if_else(mask, pa.scalar(None, type=array.type), array)
    return array


def batches(spec: Any) -> Iterator[pa.RecordBatch]:
    import numpy as np
    import pyarrow as pa

    names = [column.name for column in spec.columns]
    for index, start in enumerate(range(0, spec.rows, spec.batch_rows)):
        n = min(spec.batch_rows, spec.rows - start)
        arrays = [
            _column(column, np.random.default_rng([spec.seed, index, position]), start, n)
            for position, column in enumerate(spec.columns)
        ]
        yield pa.RecordBatch.from_arrays(arrays, names=names)


def schema_of(spec: Any) -> pa.Schema:
    """The schema, from a one-row probe (so it always matches what `batches` yields)."""
    probe = type(spec).model_validate({**spec.model_dump(by_alias=True), "rows": 1})
    return next(batches(probe)).schema


def read(spec: Any, ctx: SourceContext) -> pa.RecordBatchReader:
    import pyarrow as pa

    return pa.RecordBatchReader.from_batches(schema_of(spec), batches(spec))


def generate(rows: int, columns: list[dict], seed: int = 0, batch_rows: int = 262_144) -> pa.RecordBatchReader:
    """Callable-source entry point with the same recipe as a `synthetic` source."""
    from daemon.schema.table import SyntheticSource

    spec = SyntheticSource(type="synthetic", rows=rows, seed=seed, batch_rows=batch_rows, columns=columns)
    return read(spec, SourceContext(table="generate", data_root=None, repo_dir=None))  # type: ignore[arg-type]
