"""File sources: CSV, Parquet, JSON and NDJSON files (a path or a glob) under the data root.

DuckDB reads the files (parallel, typed CSV sniffing, `nullstr`/`delim`/... options by their DuckDB
names) and hands back Arrow batches as a stream, so a 10 GB input never sits in memory. Object-store
URIs (`s3://`, `gs://`, `file://`) go through pyarrow's filesystems instead (no DuckDB extensions
needed offline). Globs are resolved here, against the data root, so a path can never escape it and a
missing input is a clear error naming the table and the path.
"""

from __future__ import annotations

import errno
import glob as globlib
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any

from flows.tables.sources import SourceContext, SourceError

if TYPE_CHECKING:
    import pyarrow as pa

_OPTION_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_NO_FILE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)  # what Path.is_file takes for "no file"


def resolve_files(spec: Any, ctx: SourceContext) -> list[Path]:
    """The files a local path or glob matches, sorted; each must stay inside the data root."""
    return [path for path, _, _ in _matched(spec, ctx.table, ctx.data_root.resolve())]


def _matched(spec: Any, table: str, root: Path) -> list[tuple[Path, str, os.stat_result]]:
    """resolve_files with what it learnt on the way, for input_digest: (path, its real path, its stat)
    of each file — one stat and one realpath per file, the data root resolved once by the caller."""
    pattern = str(root / spec.path)
    matches = (
        sorted(Path(p) for p in globlib.glob(pattern, recursive=True))
        if globlib.has_magic(spec.path)
        else [Path(pattern)]
    )
    files = []
    for path in matches:
        try:
            stat = os.stat(path)
        except OSError as exc:  # as Path.is_file: a missing file is no match, a refused one an error
            if exc.errno not in _NO_FILE:
                raise
            continue
        except ValueError:
            continue
        if S_ISREG(stat.st_mode):
            files.append((path, stat))
    if not files:
        raise SourceError(f"table {table}: source.path {spec.path!r} matched no files under {root}")
    found = []
    for path, stat in files:
        real = os.path.realpath(path)
        if not Path(real).is_relative_to(root):
            raise SourceError(f"table {table}: source.path {spec.path!r} resolves outside the data root ({path})")
        found.append((path, real, stat))
    return found


def input_digest(spec: Any, ctx: SourceContext) -> str | None:
    if "://" in spec.path:
        return None
    root = ctx.data_root.resolve()
    try:
        found = _matched(spec, ctx.table, root)
    except SourceError:
        return "missing"
    return _digest(found, root, ctx.repo_dir.resolve() if ctx.repo_dir else None)


_content_digests: dict[tuple[str, int, int], str] = {}


def digest_files(files: list[Path], root: Path, repo: Path | None = None) -> str:
    """Files inside the Git checkout by content (every commit has a fresh checkout, so their mtimes mean
    nothing); files outside it, the big ones, by size + mtime (cheap; an in-place rewrite that keeps
    both is not seen). Content hashes are cached by (path, size, mtime) for the life of the process."""
    return _digest([(path, os.path.realpath(path), path.stat()) for path in files], root, repo)


def _digest(found: list[tuple[Path, str, os.stat_result]], root: Path, repo: Path | None) -> str:
    h = hashlib.sha256()
    for path, real, stat in found:
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        if repo is not None and Path(real).is_relative_to(repo):
            key = (str(path), stat.st_size, stat.st_mtime_ns)
            if key not in _content_digests:
                content = hashlib.sha256()
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        content.update(block)
                _content_digests[key] = content.hexdigest()
            h.update(f"{rel}\0{_content_digests[key]}\n".encode())
        else:
            h.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def read(spec: Any, ctx: SourceContext) -> pa.RecordBatchReader:
    if "://" in spec.path:
        return read_uri(spec, ctx)
    files = resolve_files(spec, ctx)
    if getattr(spec, "ingest", "all") == "new_files":
        return read_new_files(spec, files, ctx)
    return read_paths(files, spec.format, spec.options, getattr(spec, "row_id", None), ctx)


def read_new_files(spec: Any, files: list[Path], ctx: SourceContext) -> pa.RecordBatchReader:
    """A landing folder: only the files not ingested by an earlier commit (`ctx.ingested`, from the
    table's commit metadata). The names read are reported in `ctx.lineage["files"]` so the build records
    the new list with the same commit as the rows (exactly once: a crash before it re-reads them)."""
    import pyarrow as pa

    root = ctx.data_root.resolve()
    done = set(ctx.lineage.get("ingested") or ())
    fresh = [p for p in files if p.relative_to(root).as_posix() not in done]
    ctx.lineage["files"] = sorted(done | {p.relative_to(root).as_posix() for p in fresh})
    ctx.lineage["new_files"] = [p.relative_to(root).as_posix() for p in fresh]
    if not fresh:
        return pa.RecordBatchReader.from_batches(pa.schema([]), iter(()))  # columnless: "no new rows"
    return read_paths(fresh, spec.format, spec.options, getattr(spec, "row_id", None), ctx)


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def duckdb_scan(files: list[Path], file_format: str, options: Mapping[str, Any]) -> str:
    """The DuckDB table function call reading these files with these options."""
    listed = "[" + ", ".join(_literal(str(p)) for p in files) + "]"
    opts = dict(options)
    for key in opts:
        if not _OPTION_NAME.match(key):
            raise SourceError(f"source.options: {key!r} is not a reader option name")
    if file_format == "ndjson":
        opts.setdefault("format", "newline_delimited")
    elif file_format == "json":
        opts.setdefault("format", "auto")
    function = {"csv": "read_csv", "parquet": "read_parquet", "json": "read_json", "ndjson": "read_json"}[file_format]
    args = "".join(f", {key} = {_literal(value)}" for key, value in sorted(opts.items()))
    return f"{function}({listed}{args})"


def read_paths(
    files: list[Path], file_format: str, options: Mapping[str, Any], row_id: str | None, ctx: SourceContext
) -> pa.RecordBatchReader:
    import duckdb

    from flows.tables.sql_guard import sandbox

    connection = duckdb.connect()
    connection.execute("SET preserve_insertion_order = true")
    sandbox(connection, sorted({str(q) for p in files for q in (p.parent, p.resolve().parent)}))  # these files' folders only
    try:
        reader = connection.sql(f"SELECT * FROM {duckdb_scan(files, file_format, options)}").to_arrow_reader(
            ctx.batch_rows
        )
    except duckdb.Error as exc:
        connection.close()
        first = str(exc).splitlines()[0]
        raise SourceError(
            f"table {ctx.table}: cannot read {file_format} input {[p.name for p in files][:3]}: {first}"
        ) from None
    return keep_alive(reader, connection, row_id, ctx)


def keep_alive(
    reader: pa.RecordBatchReader, owner: Any, row_id: str | None, ctx: SourceContext
) -> pa.RecordBatchReader:
    """Re-stream `reader`, holding `owner` (its connection) open, optionally numbering rows, and turning
    engine errors mid-stream (a malformed row 10 M lines in) into a SourceError naming the table."""
    import pyarrow as pa

    schema = reader.schema
    if row_id:
        if row_id in schema.names:
            raise SourceError(f"table {ctx.table}: source.row_id {row_id!r} clashes with an input column")
        schema = schema.insert(0, pa.field(row_id, pa.int64(), nullable=False))

    def batches() -> Iterator[pa.RecordBatch]:
        offset = 0
        try:
            for batch in reader:
                if row_id:
                    ids = pa.array(range(offset, offset + batch.num_rows), type=pa.int64())
                    batch = pa.RecordBatch.from_arrays([ids, *batch.columns], schema=schema)
                offset += batch.num_rows
                yield batch
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"table {ctx.table}: bad input after {offset} rows: {str(exc).splitlines()[0]}") from None
        except Exception as exc:
            if type(exc).__module__.startswith("duckdb") or type(exc).__module__.startswith("_duckdb"):
                raise SourceError(
                    f"table {ctx.table}: bad input after {offset} rows: {str(exc).splitlines()[0]}"
                ) from None
            raise
        finally:
            close = getattr(owner, "close", None)
            if close:
                close()

    return pa.RecordBatchReader.from_batches(schema, batches())


def read_uri(spec: Any, ctx: SourceContext) -> pa.RecordBatchReader:
    """Object-store (or file://) URIs through pyarrow.dataset: a file or a prefix of files."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(spec.path)
    fmt = {"csv": "csv", "parquet": "parquet", "json": "json", "ndjson": "json"}[spec.format]
    try:
        dataset = ds.dataset(path, format=fmt, filesystem=filesystem)
        reader = dataset.scanner(batch_size=ctx.batch_rows).to_reader()
    except (OSError, ValueError) as exc:
        raise SourceError(
            f"table {ctx.table}: cannot read source.path {spec.path!r}: {str(exc).splitlines()[0]}"
        ) from None
    return keep_alive(reader, None, getattr(spec, "row_id", None), ctx)
