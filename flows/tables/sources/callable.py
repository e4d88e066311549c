"""Callable sources: a Python function (`_target_`) that returns Arrow or Polars data.

Only functions under allowlisted module prefixes can be called (by default `flows.tables.sources.`;
more via the adapter's configuration), so a spec cannot name `os.system`. Being importable from an
allowlisted module is not enough: the name must be *defined* there as a public top-level function or
class (`...files:Path`, re-exported from pathlib, is refused), and a module that lists its entry points
in `CALLABLE_SOURCES` allows only those (specd's own reader modules allow only what they list, nothing
when they list nothing: their functions are reader internals). `static_problem` checks this at validate time from the module's source (AST, no import of the
module itself, so validate stays light); `resolve` checks it again on the live object at apply
(`__module__`, function or class). The function gets the spec's
`args` as keyword arguments and may return a pyarrow Table/RecordBatch/RecordBatchReader, anything that
exports an Arrow C stream, a Polars DataFrame/LazyFrame, or an iterable of record batches.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
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


ENTRY_POINTS = "CALLABLE_SOURCES"


def _entry_points(tree: ast.Module) -> tuple[str, ...] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == ENTRY_POINTS for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return ()
            return tuple(str(v) for v in value) if isinstance(value, tuple | list) else ()
    return None


def _builtin(module_name: str) -> bool:
    """specd's own reader modules offer only what they list in CALLABLE_SOURCES (nothing if they list nothing)."""
    return module_name == "flows.tables.sources" or module_name.startswith("flows.tables.sources.")


def static_problem(target: str, prefixes: tuple[str, ...]) -> str | None:
    """Why `target` may not be a callable source, judged from the module's source text, or None."""
    if not allowed(target, prefixes):
        return f"{target!r} is not on the allowlist (module prefixes: {', '.join(prefixes)})"
    module_name, name = split_target(target)
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as exc:
        return f"module {module_name!r} cannot be found: {exc}"
    if found is None or not found.origin or not found.origin.endswith(".py"):
        return f"module {module_name!r} is not a Python source module on the path"
    try:
        with open(found.origin, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=found.origin)
    except (OSError, SyntaxError, ValueError) as exc:
        return f"module {module_name!r} cannot be read: {exc}"
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    if name.startswith("_"):
        return f"{name!r} is private to {module_name}"
    if name not in defined:
        return f"{name!r} is not a function or class defined in {module_name} (re-exported or missing)"
    entry_points = _entry_points(tree)
    if entry_points is None and _builtin(module_name):
        entry_points = ()
    if entry_points is not None and name not in entry_points:
        listed = ", ".join(entry_points) or "none"
        return f"{name!r} is not one of the callable sources {module_name} offers ({ENTRY_POINTS}: {listed})"
    return None


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
    module = importlib.import_module(module_name)
    entry_points = getattr(module, ENTRY_POINTS, () if _builtin(module_name) else None)
    if (
        not (inspect.isfunction(function) or inspect.isclass(function))
        or getattr(function, "__module__", None) != module_name
        or function_name.startswith("_")
        or (entry_points is not None and function_name not in entry_points)
    ):
        raise SourceError(
            f"table {ctx.table}: source._target_ {target!r} is not a callable source defined in {module_name}"
        )
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
