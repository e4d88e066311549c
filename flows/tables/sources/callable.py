"""Callable sources: a Python function (`_target_`) that returns Arrow or Polars data.

Only functions under allowlisted module prefixes can be called (by default `flows.tables.sources.`;
more via the adapter's configuration), so a spec cannot name `os.system`. The function gets the spec's
`args` as keyword arguments and may return a pyarrow Table/RecordBatch/RecordBatchReader, anything that
exports an Arrow C stream, a Polars DataFrame/LazyFrame, or an iterable of record batches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flows.tables.sources import SourceContext, SourceError

if TYPE_CHECKING:
    import pyarrow as pa


def split_target(target: str) -> tuple[str, str]:
    if ":" in target:
        module, _, function = target.partition(":")
    else:
        module, _, function = target.rpartition(".")
    return module, function


def allowed(target: str, prefixes: tuple[str, ...]) -> bool:
    module, _ = split_target(target)
    return any(
        module == prefix.rstrip(".") or module.startswith(prefix if prefix.endswith(".") else prefix + ".")
        for prefix in prefixes
    )


def resolve(target: str, ctx: SourceContext) -> Any:
    if not allowed(target, ctx.allowed_modules):
        raise SourceError(
            f"table {ctx.table}: source._target_ {target!r} is not on the allowlist ({', '.join(ctx.allowed_modules)})"
        )
    module_name, function_name = split_target(target)
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise SourceError(f"table {ctx.table}: source._target_ {target!r} cannot be imported: {exc}") from None
    if not callable(function):
        raise SourceError(f"table {ctx.table}: source._target_ {target!r} is not callable")
    return function


def to_reader(result: Any, ctx: SourceContext) -> pa.RecordBatchReader:
    import pyarrow as pa

    if isinstance(result, pa.RecordBatchReader):
        return result
    if isinstance(result, pa.Table):
        return result.to_reader()
    if isinstance(result, pa.RecordBatch):
        return pa.Table.from_batches([result]).to_reader()
    kind = type(result).__module__.split(".")[0]
    if kind == "polars":
        import polars as pl

        frame = result.collect() if isinstance(result, pl.LazyFrame) else result
        return frame.to_arrow().to_reader()
    if hasattr(result, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(result)
    if hasattr(result, "__iter__"):
        iterator = iter(result)
        first = next(iterator, None)
        if isinstance(first, pa.RecordBatch):

            def chained():
                yield first
                yield from iterator

            return pa.RecordBatchReader.from_batches(first.schema, chained())
    raise SourceError(f"table {ctx.table}: source._target_ returned {type(result).__name__}, not Arrow or Polars data")


def read(spec: Any, ctx: SourceContext) -> pa.RecordBatchReader:
    function = resolve(spec.target, ctx)
    try:
        result = function(**spec.args)
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(
            f"table {ctx.table}: source._target_ {spec.target} raised {type(exc).__name__}: {exc}"
        ) from None
    return to_reader(result, ctx)
