"""Delta writes that carry their lineage and land exactly once.

Every commit specd makes holds `custom_metadata` (fingerprint, git sha, build key, row counters,
watermark) so the Delta log itself is the observed state. Each build is numbered: the table's app
transaction `specd:<table>` version N+1 commits atomically with the data, and the quarantine table
records the same number, so a build interrupted anywhere (kill -9 before, during or between the two
commits) is completed or repeated on the next run without duplicating or losing a row. deltalake does
not skip a repeated `Transaction` itself: `next_batch` and `quarantine_done` check it.

Schema policy: `enforce` fails with a readable column diff before a single file is written; `evolve`
adds new columns (schema_mode="merge") but never silently changes a column's type.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from daemon.shared.retry import call_with_retries
from flows.tables import APP_ID_PREFIX

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable


ROW_GROUP_ROWS = 1_048_576


class SchemaMismatch(Exception):
    """The output does not fit the table's schema under the declared policy; the message is the diff."""


class ConcurrentCommit(Exception):
    """Another writer committed first and retries ran out (transient: the build can be re-run)."""


def app_id(table: str) -> str:
    return APP_ID_PREFIX + table


def open_table(uri: str, storage_options: Mapping[str, str] | None = None) -> DeltaTable | None:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(uri, storage_options=dict(storage_options or {}) or None)
    except TableNotFoundError:
        return None


def next_batch(table: DeltaTable | None, name: str) -> int:
    """The build number this run will commit: one past the last committed app transaction."""
    if table is None:
        return 1
    return (table.transaction_version(app_id(name)) or 0) + 1


# ------------------------------------------------------------------------------------------ schema
def _normalise(dtype: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "string"
    if pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return "binary"
    if pa.types.is_timestamp(dtype):
        return f"timestamp[us{', tz=UTC' if dtype.tz else ''}]"
    if pa.types.is_dictionary(dtype):
        return _normalise(dtype.value_type)
    return str(dtype)


def declared_schema(columns: Sequence[Any]) -> pa.Schema:
    import pyarrow as pa

    fields = []
    for column in columns:
        try:
            dtype = pa.type_for_alias(column.type)
        except ValueError:
            raise SchemaMismatch(f"schema.columns: {column.name}: unknown type {column.type!r}") from None
        fields.append(pa.field(column.name, dtype, nullable=column.nullable))
    return pa.schema(fields)


def schema_diff(expected: pa.Schema, actual: pa.Schema) -> list[str]:
    """Readable differences: '+ col: type' (only in the output), '- col: type' (missing), '~ col: a → b'."""
    lines = []
    want = {f.name: _normalise(f.type) for f in expected}
    have = {f.name: _normalise(f.type) for f in actual}
    for name in actual.names:
        if name not in want:
            lines.append(f"+ {name}: {have[name]}  (in the output, not in the table)")
        elif want[name] != have[name]:
            lines.append(f"~ {name}: table has {want[name]}, output has {have[name]}")
    for name in expected.names:
        if name not in have:
            lines.append(f"- {name}: {want[name]}  (in the table, missing from the output)")
    return lines


def plan_schema(output: pa.Schema, existing: pa.Schema | None, declared: pa.Schema | None, policy: str, table: str) -> tuple[pa.Schema, str | None]:
    """(schema to write, deltalake schema_mode) for this output, or SchemaMismatch with the diff."""
    import pyarrow as pa

    target = output
    if declared is not None and len(declared):
        missing = [f.name for f in declared if f.name not in output.names]
        extra = [n for n in output.names if n not in declared.names]
        if missing or (extra and policy == "enforce"):
            raise SchemaMismatch(_message(table, "declared schema.columns", schema_diff(declared, output)))
        fields = [declared.field(n) if n in declared.names else output.field(n) for n in output.names]
        target = pa.schema(fields)  # declared types win: the output is cast to them
    if existing is None:
        return target, None
    diff = schema_diff(existing, target)
    if not diff:
        return target, None
    changed = [line for line in diff if line.startswith("~")]
    if policy == "enforce" or changed:
        what = "table schema (policy enforce)" if policy == "enforce" else "table schema (evolve adds columns, never changes a type)"
        raise SchemaMismatch(_message(table, what, diff))
    return target, "merge"


def _message(table: str, against: str, diff: list[str]) -> str:
    return f"table {table}: output does not match the {against}:\n  " + "\n  ".join(diff)


def cast_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(schema, check_metadata=False):
        return batch
    return batch.select(schema.names).cast(schema, safe=True)


# ------------------------------------------------------------------------------------------ commits
@dataclass(frozen=True)
class WriteRequest:
    uri: str
    name: str  # table name (its app transaction id is specd:<name>)
    mode: str  # overwrite | append | merge
    schema: pa.Schema  # of the rows written (partition columns included)
    keys: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    schema_mode: str | None = None  # "merge": add the output's new columns to the table first
    metadata: Mapping[str, str] | None = None
    batch: int | None = None  # app transaction version committed with the data
    storage_options: Mapping[str, str] | None = None
    max_rows_per_file: int = 4_000_000
    description: str = ""  # the spec's description: the Delta table's own (set when the table is created)


def commit_properties(request: WriteRequest, metadata: Mapping[str, str]) -> Any:
    from deltalake import CommitProperties, Transaction

    transactions = [Transaction(app_id(request.name), request.batch)] if request.batch is not None else None
    return CommitProperties(custom_metadata=dict(metadata), max_commit_retries=10, app_transactions=transactions)


class StagedFiles:
    """Parquet files written into the table directory but not yet committed (invisible to readers).

    Writing the files ourselves and committing their `add` actions afterwards lets the commit carry
    metadata only known at the end of the stream (row counters, watermark), in the same atomic commit.
    A kill before the commit leaves unreferenced files that `vacuum` removes; readers never see them.
    """

    def __init__(self, request: WriteRequest, directory: str | None = None):
        self.request = request
        self.directory = directory or request.uri
        self.adds: list[Any] = []
        self.paths: list[str] = []  # absolute paths of the staged files
        self.filesystem: Any = None
        self.rows = 0

    def write(self, batches: Any) -> None:
        import uuid

        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.fs as pafs

        from daemon.shared import storage_uri

        # the table's own endpoint and credentials (an object store), or the local directory
        filesystem, base = storage_uri.filesystem(self.directory, self.request.storage_options)
        if storage_uri.is_local(self.directory):
            pafs.LocalFileSystem().create_dir(base, recursive=True)
        schema = self.request.schema
        if not self.request.partition_by:
            self._write_plain(batches, filesystem, base)
            return
        partitioning = None
        if self.request.partition_by:
            partitioning = ds.partitioning(pa.schema([schema.field(c) for c in self.request.partition_by]), flavor="hive")
        written: list[Any] = []
        ds.write_dataset(
            pa.RecordBatchReader.from_batches(schema, batches),
            base,
            format="parquet",
            filesystem=filesystem,
            partitioning=partitioning,
            basename_template=f"part-{uuid.uuid4().hex}-{{i}}.snappy.parquet",
            existing_data_behavior="overwrite_or_ignore",
            max_rows_per_file=self.request.max_rows_per_file,
            max_rows_per_group=min(1_048_576, self.request.max_rows_per_file),
            file_visitor=written.append,
        )
        self.filesystem = filesystem
        for item in written:
            self.adds.append(_add_action(item, base, self.request.partition_by))
            self.paths.append(item.path)
            self.rows += item.metadata.num_rows


    def _write_plain(self, batches: Any, filesystem: Any, base: str) -> None:
        """Unpartitioned: one ParquetWriter per file, rolled every `max_rows_per_file` rows (a quarter
        faster than write_dataset here: no partitioning machinery between the batches and the writer)."""
        import uuid
        from types import SimpleNamespace

        import pyarrow.parquet as pq

        schema = self.request.schema
        writer, path, rows_in_file = None, "", 0

        def close() -> None:
            nonlocal writer
            if writer is None:
                return
            writer.close()
            metadata = pq.read_metadata(path, filesystem=filesystem)
            size = filesystem.get_file_info(path).size
            item = SimpleNamespace(path=path, size=size, metadata=metadata)
            self.adds.append(_add_action(item, base, ()))
            self.paths.append(path)
            self.rows += metadata.num_rows
            writer = None

        import pyarrow as pa

        group: list[Any] = []
        group_rows = 0

        def flush() -> None:
            nonlocal writer, path, rows_in_file, group, group_rows
            if not group_rows:
                return
            if writer is None:
                path = f"{base.rstrip('/')}/part-{uuid.uuid4().hex}-0.snappy.parquet"
                writer = pq.ParquetWriter(path, schema, filesystem=filesystem, compression="snappy")
                rows_in_file = 0
            writer.write_table(pa.Table.from_batches(group, schema=schema), row_group_size=ROW_GROUP_ROWS)
            rows_in_file += group_rows
            group, group_rows = [], 0
            if rows_in_file >= self.request.max_rows_per_file:
                close()

        try:
            for batch in batches:  # buffer up to one row group (bounded), then write it
                if batch.num_rows:
                    group.append(batch)
                    group_rows += batch.num_rows
                    if group_rows >= ROW_GROUP_ROWS:
                        flush()
            flush()
            close()
        except BaseException:
            # A failed write (a full disk, say) must not keep its file open: the caller deletes the
            # partial files, and an open descriptor would keep their space allocated.
            if writer is not None:
                try:
                    writer.close()
                except Exception:
                    pass
                writer = None
            raise
        self.filesystem = filesystem


def _add_action(item: Any, base: str, partition_by: Sequence[str]) -> Any:
    import json
    from urllib.parse import quote, unquote

    from deltalake.transaction import AddAction

    relative = item.path[len(base):].lstrip("/")
    values: dict[str, str | None] = {}
    for part in relative.split("/")[:-1]:
        key, _, value = part.partition("=")
        value = unquote(value)
        values[key] = None if value == "__HIVE_DEFAULT_PARTITION__" else value
    stats = json.dumps(file_stats(item.metadata, set(partition_by)))
    return AddAction(quote(relative, safe="/=-_.~"), item.size, values, int(time.time() * 1000), True, stats)


def file_stats(metadata: Any, skip: set[str]) -> dict[str, Any]:
    """Delta file statistics from the Parquet footer: row count, null counts, exact numeric/string bounds
    (no bounds for types whose Delta text form we would have to guess: data skipping must never lie)."""
    import math

    nulls: dict[str, int] = {}
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    unusable: set[str] = set()
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            name = column.path_in_schema
            if "." in name or name in skip:
                continue
            stats = column.statistics
            if stats is None:
                unusable.add(name)
                continue
            nulls[name] = nulls.get(name, 0) + (stats.null_count or 0)
            usable = stats.has_min_max and stats.physical_type in ("INT32", "INT64", "DOUBLE", "FLOAT", "BYTE_ARRAY")
            logical = str(stats.logical_type)
            if usable and stats.physical_type in ("INT32", "INT64") and logical not in ("None", "Int(bitWidth=32, isSigned=true)", "Int(bitWidth=64, isSigned=true)", "Int(bitWidth=16, isSigned=true)", "Int(bitWidth=8, isSigned=true)"):
                usable = False  # dates, timestamps, decimals: skip
            if usable and stats.physical_type == "BYTE_ARRAY" and logical != "String":
                usable = False
            if not usable or any(isinstance(v, float) and math.isnan(v) for v in (stats.min, stats.max)):
                unusable.add(name)
                continue
            lows[name] = stats.min if name not in lows else min(lows[name], stats.min)
            highs[name] = stats.max if name not in highs else max(highs[name], stats.max)
    for name in unusable:
        lows.pop(name, None)
        highs.pop(name, None)
    return {"numRecords": metadata.num_rows, "minValues": lows, "maxValues": highs, "nullCount": nulls}


def commit_staged(request: WriteRequest, staged: StagedFiles, metadata: Mapping[str, str]) -> int:
    """Commit staged files (overwrite or append) with `metadata`; returns the new version."""
    from deltalake.exceptions import CommitFailedError
    from deltalake.schema import Schema as DeltaSchema
    from deltalake.transaction import create_table_with_add_actions

    table = open_table(request.uri, request.storage_options)
    properties = commit_properties(request, metadata)
    try:
        if table is None:
            create_table_with_add_actions(
                request.uri,
                DeltaSchema.from_arrow(request.schema),
                staged.adds,
                mode="error",
                partition_by=list(request.partition_by) or None,
                name=request.name,
                description=request.description or None,
                storage_options=dict(request.storage_options or {}) or None,
                commit_properties=properties,
            )
        else:
            if request.mode != "overwrite" and request.schema_mode == "merge":
                add_new_columns(table, request.schema)
            table.create_write_transaction(
                staged.adds,
                "overwrite" if request.mode == "overwrite" else "append",
                request.schema,
                partition_by=list(request.partition_by) or None,
                commit_properties=properties,
            )
    except CommitFailedError as exc:
        raise ConcurrentCommit(f"table {request.name}: a concurrent commit won ({exc}); the build will be retried") from None
    return open_table(request.uri, request.storage_options).version()  # type: ignore[union-attr]


def add_new_columns(table: DeltaTable, schema: pa.Schema) -> None:
    """Schema evolution for appends: add the output's new (nullable) columns to the table first."""
    import pyarrow as pa
    from deltalake.schema import Field as DeltaField
    from deltalake.schema import Schema as DeltaSchema

    existing = set(pa.schema(table.schema().to_arrow()).names)
    new = [schema.field(n).with_nullable(True) for n in schema.names if n not in existing]
    if new:
        fields = DeltaSchema.from_arrow(pa.schema(new)).fields
        table.alter.add_columns([DeltaField(f.name, f.type, nullable=True) for f in fields])


def merge(request: WriteRequest, source: pa.RecordBatchReader, metadata: Mapping[str, str], *, delete_missing: bool = False) -> int:
    """Upsert `source` into the table on `request.keys` in one commit (table must exist). With
    `delete_missing` (a full, non-incremental source) rows whose key left the source are deleted, so
    the table mirrors its definition while only changed rows are rewritten."""
    from deltalake.exceptions import CommitFailedError

    table = open_table(request.uri, request.storage_options)
    assert table is not None
    predicate = " AND ".join(f't."{k}" = s."{k}"' for k in request.keys)
    try:
        merger = (
            table.merge(
                source,
                predicate,
                source_alias="s",
                target_alias="t",
                merge_schema=request.schema_mode == "merge",
                commit_properties=commit_properties(request, metadata),
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
        )
        if delete_missing:
            merger = merger.when_not_matched_by_source_delete()
        merger.execute()
    except CommitFailedError as exc:
        raise ConcurrentCommit(f"table {request.name}: a concurrent commit won ({exc}); the build will be retried") from None
    return open_table(request.uri, request.storage_options).version()  # type: ignore[union-attr]


def table_schema(table: DeltaTable | None) -> pa.Schema | None:
    import pyarrow as pa

    return pa.schema(table.schema().to_arrow()) if table is not None else None


def commit_with_retries(action: Any, name: str, attempts: int = 5, backoff_s: float = 0.2) -> Any:
    """Run a commit-only action (restore, compact, vacuum) again when another writer commits first."""
    from deltalake.exceptions import CommitFailedError

    try:
        return call_with_retries(action, attempts=attempts, backoff_s=backoff_s, retry_on=CommitFailedError)
    except CommitFailedError as exc:
        raise ConcurrentCommit(f"table {name}: commit kept conflicting ({exc})") from None
