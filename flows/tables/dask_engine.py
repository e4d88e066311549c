"""The Dask engine (`engine: dask`): one table built partition by partition on a Dask cluster.

A table whose input does not fit one machine is split where its data already is split — Parquet row
groups, CSV files, the data files of an upstream Delta version — and each partition runs the row-local
part of the same pipeline on a Dask worker: the stage SQL of clean / features / quality (the very SQL
the DuckDB engine runs, in a DuckDB connection on the worker), privacy per batch (the same function, so
hash and mask give the same bytes), the quarantine split, the order-insensitive row digest, and the
Parquet files, written straight into the table's directory (staged, invisible to readers). The driver
then makes ONE commit through `flows/tables/write.py`, with the same app transaction, row accounting,
digest and lineage as a DuckDB build — so exactly-once, restore on revert and lineage stay in one place,
and a kill -9 anywhere leaves at most unreferenced files (removed by the failed build's cleanup or by
vacuum), never a half version. Features that need several partitions at once are refused by `validate`
(daemon/schema/table_engine.py) instead of silently running elsewhere.

The cluster is the environment's `tables.dask`: a `distributed.LocalCluster` on 127.0.0.1 that the
build starts and stops, or an existing scheduler (`dask scheduler` + `dask worker` per machine; workers
need specd installed, the data root and the table root reachable, and the same secrets).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.tables import (
    BATCH,
    BUILD_KEY,
    DATA_DIGEST,
    DATA_ID,
    PRIVACY_KEYS,
    PRIVACY_WARNINGS,
    QUALITY,
    ROWS_PREFIX,
    build_key,
    table_uri,
)
from flows.tables import quarantine as quarantine_store
from flows.tables.report import (
    NO_NEW_ROWS,
    BuildFailed,
    BuildReport,
    account_rows,
    classify_failure,
    quarantine_lineage,
)
from flows.tables.stages import REASON_COLUMN, StageError

PART_ROWS = 1_000_000  # Parquet row groups are grouped into partitions of about this many rows


@dataclass(frozen=True)
class Part:
    """One unit of work: a file (CSV), some row groups of a Parquet file, or one Delta data file."""

    kind: str  # csv | parquet | delta
    path: str
    row_groups: tuple[int, ...] = ()
    version: int = -1  # delta: the upstream version every partition reads
    rows: int = -1  # known up front for Parquet and Delta (metadata), -1 for CSV


class Task(dict):
    """A partition task's arguments. They hold the table's resolved storage options (credentials), and
    Dask logs a failed task with its arguments: the representation names the partition only."""

    def __repr__(self) -> str:
        return f"<specd table task {self.get('part')}>"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    scheduler: str = "local"
    workers: int = 2
    threads_per_worker: int = 1
    partition_rows: int = PART_ROWS

    @classmethod
    def of(cls, data: dict[str, Any] | None) -> Settings:
        data = data or {}
        return cls(str(data.get("scheduler", "local")), int(data.get("workers", 2)), int(data.get("threads_per_worker", 1)),
                   int(data.get("partition_rows", PART_ROWS)))


@contextmanager
def cluster_client(settings: Settings) -> Iterator[Any]:
    """A Dask client for the build; a local cluster is started here and always stopped here."""
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)
    if settings.scheduler != "local":
        client = Client(settings.scheduler, timeout="30s")
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(n_workers=settings.workers, threads_per_worker=settings.threads_per_worker, processes=True,
                           host="127.0.0.1", dashboard_address=None, worker_dashboard_address=None)
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


# ------------------------------------------------------------------------------------------ inputs
def partitions(spec: Any, ctx: Any, part_rows: int | None = None) -> tuple[list[Part], Any]:
    """The partitions of the table's input and its Arrow schema (as DuckDB reads the whole input)."""
    import duckdb
    import pyarrow.parquet as pq

    from flows.tables.sources.files import duckdb_scan, resolve_files

    part_rows = part_rows or PART_ROWS
    source = spec.source
    if source.type == "table":
        return _delta_partitions(source.inputs[0], ctx)
    files = resolve_files(source, ctx)
    connection = duckdb.connect()
    try:
        schema = connection.sql(f"SELECT * FROM {duckdb_scan(files, source.format, source.options)} LIMIT 0").to_arrow_table().schema
    except duckdb.Error as exc:
        raise BuildFailed(f"table {ctx.table}: cannot read {source.format} input: {str(exc).splitlines()[0]}", reason="SourceError") from None
    finally:
        connection.close()
    if source.format == "csv":
        return [Part("csv", str(p)) for p in files], schema
    parts: list[Part] = []
    for path in files:
        meta = pq.ParquetFile(path).metadata
        group: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            group.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= part_rows:
                parts.append(Part("parquet", str(path), tuple(group), rows=rows))
                group, rows = [], 0
        if group or not parts or parts[-1].path != str(path):
            parts.append(Part("parquet", str(path), tuple(group), rows=rows))
    return parts, schema


def _delta_partitions(name: str, ctx: Any) -> tuple[list[Part], Any]:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from flows.tables.sources import SourceError

    uri = ctx.upstream.get(name)
    if uri is None:
        raise SourceError(f"table {ctx.table}: upstream table {name!r} is not known to this build")
    try:
        table = DeltaTable(uri, storage_options=dict(ctx.storage_options) or None)
    except TableNotFoundError:
        raise SourceError(f"table {ctx.table}: upstream table {name!r} does not exist yet ({uri})", transient=True) from None
    version = table.version()
    ctx.lineage.setdefault("upstream_versions", {})[name] = version
    dataset = table.to_pyarrow_dataset()
    parts = [Part("delta", fragment.path, version=version, rows=-1) for fragment in dataset.get_fragments()]
    return parts, _duckdb_schema(dataset)


def _duckdb_schema(data: Any) -> Any:
    """The schema DuckDB gives `data` (the DuckDB engine reads every input through DuckDB)."""
    import duckdb

    connection = duckdb.connect()
    try:
        connection.register("_specd_input", data)
        return connection.sql("SELECT * FROM _specd_input LIMIT 0").to_arrow_table().schema
    finally:
        connection.close()


def read_part(part: Part, spec: Any, schema: Any, upstream_uri: str | None, options: dict[str, str] | None) -> Any:
    """The rows of one partition as an Arrow table in the whole input's schema."""
    if part.kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(part.path).read_row_groups(list(part.row_groups)) if part.row_groups else pq.read_table(part.path).slice(0, 0)
    elif part.kind == "csv":
        table = _read_csv(part, spec, schema)
    else:
        import pyarrow.dataset as ds
        from deltalake import DeltaTable

        dataset = DeltaTable(upstream_uri, version=part.version, storage_options=options).to_pyarrow_dataset()
        fragments = [f for f in dataset.get_fragments() if f.path == part.path]
        if len(fragments) != 1:
            raise StageError(f"source: upstream data file {part.path} is not in version {part.version} any more")
        table = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem).to_table()
    if table.schema.names != schema.names:
        missing = [n for n in schema.names if n not in table.schema.names]
        if missing:
            raise StageError(f"source: {part.path} lacks column(s) {missing} that other input partitions have")
        table = table.select(schema.names)
    return table if table.schema.equals(schema) else table.cast(schema, safe=True)


def _read_csv(part: Part, spec: Any, schema: Any) -> Any:
    import duckdb

    from flows.tables.sources.files import duckdb_scan
    from flows.tables.sql_guard import sandbox

    connection = duckdb.connect()
    try:
        # the types DuckDB inferred over all the files, so every partition reads a column the same way
        described = _describe_types(schema)
        scan = duckdb_scan([Path(part.path)], "csv", spec.source.options)
        scan = scan[:-1] + ", types = {" + ", ".join(f"'{n.replace(chr(39), chr(39) * 2)}': '{t}'" for n, t in described.items()) + "})"
        sandbox(connection, [str(Path(part.path).parent)])
        return connection.sql(f"SELECT * FROM {scan}").to_arrow_table()
    finally:
        connection.close()


def _describe_types(schema: Any) -> dict[str, str]:
    import duckdb

    connection = duckdb.connect()
    try:
        connection.register("_specd_schema", schema.empty_table())
        return {row[0]: row[1] for row in connection.execute("DESCRIBE SELECT * FROM _specd_schema").fetchall()}
    finally:
        connection.close()


# ------------------------------------------------------------------------------------------ stages
def pipeline(connection: Any, spec: Any) -> tuple[str, bool, str | None]:
    """The stages over the view `_specd_stream`, as the DuckDB engine chains them: (view, carries a
    quarantine reason, the key-group size column of a dedupe). A dedupe runs over a shuffled bucket,
    which holds every row of its keys."""
    from flows.tables import stages

    view, reason, group_rows = "_specd_stream", False, None
    if spec.clean is not None:
        result = stages.clean(connection, view, spec.clean, group_rows=spec.clean.dedupe is not None)
        view, reason, group_rows = result.view, result.carries_reason, result.group_rows_column
    if spec.features is not None:
        result = stages.features(connection, view, spec.features, {}, reason, (group_rows,) if group_rows else ())
        view, reason = result.view, result.carries_reason
    if spec.quality is not None:
        result = stages.quality(connection, view, spec.quality, reason)
        view, reason = result.view, result.carries_reason
    return view, reason, group_rows


def output_schema(spec: Any, input_schema: Any, resolve_secret: Any) -> tuple[Any, bool]:
    """(schema of the written rows, whether rows carry a quarantine reason): the stages over no rows."""
    import duckdb
    import pyarrow as pa

    from flows.tables import stages

    connection = duckdb.connect()
    try:
        connection.register("_specd_stream", input_schema.empty_table())
        view, reason, group_rows = pipeline(connection, spec)
        produced = connection.sql(f'SELECT * FROM "{view}" LIMIT 0').to_arrow_table().schema
    finally:
        connection.close()
    produced = pa.schema([f for f in produced if f.name not in (REASON_COLUMN, group_rows)])
    _, protected_schema = stages.protector(spec.privacy, resolve_secret)
    return (protected_schema(produced) if protected_schema else produced), reason


def split_part(task: dict[str, Any]) -> list[Any]:
    """Shuffle, first half: one partition's rows in `buckets` pieces by the hash of the dedupe keys
    (DuckDB's `hash` of the input-typed values, so equal keys land in the same bucket everywhere)."""
    import duckdb

    table = read_part(task["part"], None, task["input_schema"], task.get("upstream_uri"), task.get("storage_options"))
    if task["buckets"] == 1:
        return [table]
    connection = duckdb.connect()
    try:
        connection.register("_specd_rows", table)
        keys = ", ".join('"' + k.replace('"', '""') + '"' for k in task["keys"])
        bucket = connection.sql(f"SELECT (hash({keys}) % {int(task['buckets'])})::INTEGER AS b FROM _specd_rows").to_arrow_table().column(0)
    finally:
        connection.close()
    import pyarrow.compute as pc

    return [table.filter(pc.equal(bucket, i)) for i in range(task["buckets"])]


def run_part(task: dict[str, Any], *pieces: Any) -> dict[str, Any]:
    """One partition (or one shuffled bucket: its `pieces`), on a Dask worker: read → stages → privacy →
    quarantine split → digest → files."""
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    from daemon.schema.table import TableSpec
    from flows.tables import stages
    from flows.tables.build import _resolve_secret
    from flows.tables.digest import RowDigest
    from flows.tables.privacy_scan import undeclared
    from flows.tables.sql_guard import sandbox
    from flows.tables.write import StagedFiles, cast_batch

    spec = TableSpec.model_validate(task["spec"])
    part: Part = task["part"]
    request = task["request"]
    if part is None:  # a shuffled bucket
        table = pa.concat_tables(pieces) if pieces else task["input_schema"].empty_table()
    else:
        table = read_part(part, spec, task["input_schema"], task.get("upstream_uri"), task.get("storage_options"))
    work = tempfile.mkdtemp(prefix="specd-dask-part-")
    connection = duckdb.connect()
    try:
        connection.execute(f"SET temp_directory = '{work}/spill'")
        connection.execute("SET preserve_insertion_order = false" if spec.clean or spec.features else "SET preserve_insertion_order = true")
        sandbox(connection, [work])
        connection.register("_specd_stream", table)
        view, reason, group_rows = pipeline(connection, spec)
        out = connection.sql(f'SELECT * FROM "{view}"').to_arrow_reader(task["batch_rows"])
        protect, _ = stages.protector(spec.privacy, _resolve_secret)
        action = spec.quality.action if spec.quality is not None else "quarantine"
        target = request.schema
        result: dict[str, Any] = {"read": table.num_rows, "written": 0, "quarantined": 0, "deduplicated": 0, "failures": {}, "personal": [],
                                  "quarantine": [], "refused": None}
        checks = stages.TableChecks(spec.quality)
        hasher = connection.cursor()  # same database, own connection: the stages' reader is still streaming
        digest = RowDigest(hasher)

        def good_rows() -> Iterator[pa.RecordBatch]:
            for raw in out:
                bookkeeping = [c for c in (REASON_COLUMN if reason else None, group_rows) if c]
                if raw.num_rows and not result["written"] + result["quarantined"] and not result["personal"]:
                    result["personal"] = undeclared(raw.drop_columns(bookkeeping), spec.privacy) or ["-"]
                    if result["personal"] != ["-"] and task["require_declared_privacy"]:
                        result["refused"] = result["personal"]
                        return
                if group_rows:  # each kept row stands for its whole key group
                    result["deduplicated"] += int(pc.sum(raw.column(group_rows)).as_py() or 0) - raw.num_rows
                    raw = raw.drop_columns([group_rows])
                if protect:  # protect first: plaintext never reaches a file, quarantine included
                    reasons = raw.column(REASON_COLUMN) if reason else None
                    body = protect(raw.drop_columns([REASON_COLUMN]) if reason else raw)
                    raw = body.append_column(REASON_COLUMN, reasons) if reason else body
                if not reason:
                    good = raw
                else:
                    reasons = raw.column(REASON_COLUMN)
                    failed = pc.is_valid(reasons)
                    if pc.any(failed).as_py():
                        for check, n in stages.failure_counts(reasons).items():
                            result["failures"][check] = result["failures"].get(check, 0) + n
                    quarantined = pc.and_(failed, pc.match_substring(reasons, ".cast")) if action in ("warn", "fail") else failed
                    quarantined = pc.fill_null(quarantined, False)
                    bad = raw.filter(quarantined)
                    if bad.num_rows:
                        result["quarantine"].append(bad)
                        result["quarantined"] += bad.num_rows
                    good = raw.filter(pc.invert(quarantined)).drop_columns([REASON_COLUMN])
                result["written"] += good.num_rows
                checks.add(good)
                written = cast_batch(good, target)
                digest.add(written)
                yield written

        staged = StagedFiles(request)
        staged.write(good_rows())
        digest.close()
        hasher.close()
        stats = checks.stats
        result.update(adds=staged.adds, paths=staged.paths, digest=(digest.total, digest.rows),
                      row_count=stats.row_count if stats else 0, newest=stats.newest if stats else None)
        return result
    finally:
        connection.close()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------ the build
def build(job: Any, spec: Any) -> BuildReport:
    """Build `job`'s table with the Dask engine (called by flows.tables.build under the table lock)."""
    from flows.tables import build as duck
    from flows.tables.expressions import check_table_expressions
    from flows.tables.sources import SourceContext, input_digest
    from flows.tables.write import WriteRequest, declared_schema, next_batch, open_table, plan_schema, table_schema

    refused = check_table_expressions(spec)  # validate checks the same; a bypassed validate ends here
    if refused:
        raise BuildFailed("; ".join(f"table {job.name}: {'.'.join(map(str, path))}: {message}" for path, message in refused),
                          reason="SpecRefused")
    from daemon.schema.table_engine import dask_unsupported

    unsupported = dask_unsupported(dict(spec))
    if unsupported:
        raise BuildFailed(f"table {job.name}: engine: engine 'dask' does not support {'; '.join(unsupported)}", reason="SpecRefused")
    uri = table_uri(job.storage_root, job.name)
    options = job.storage_options or None
    table = open_table(uri, options)
    batch = next_batch(table, job.name)
    spool_dir = Path(job.state_dir) / "quarantine-pending" / job.name
    latest_meta = duck._latest_metadata(uri, options)
    quarantine_store.recover(spool_dir, job.storage_root, job.name, batch - 1, spec.write.mode, lambda b: latest_meta, options)
    ctx = SourceContext(table=job.name, data_root=Path(job.data_root), repo_dir=Path(job.repo_dir), upstream=job.upstream,
                        storage_options=job.storage_options, resolve_secret=duck._resolve_secret,
                        allowed_modules=tuple(job.allowed_modules), batch_rows=job.batch_rows, tls=job.tls)
    digest_in = input_digest(spec.source, ctx)  # before reading: a change during the build makes it stale
    upstream = duck.upstream_ids(job, spec.upstream_tables())
    key = build_key(job.fingerprint, digest_in, upstream)
    metadata = duck._metadata(job, key, digest_in, upstream)
    settings = Settings.of(getattr(job, "dask", None))
    try:
        parts, input_schema = partitions(spec, ctx, settings.partition_rows)
        produced, reason = output_schema(spec, input_schema, duck._resolve_secret)
        missing = [c for c in spec.partition_by if c not in produced.names]
        if missing:
            raise StageError(f"partition_by: {missing} not among the output columns {produced.names}")
        declared = declared_schema(spec.schema_.columns) if spec.schema_.columns else None
        target, schema_mode = plan_schema(produced, table_schema(table), declared, spec.schema_.policy, job.name)
        request = WriteRequest(uri, job.name, spec.write.mode, target, tuple(spec.write.keys), tuple(spec.partition_by),
                               schema_mode, batch=batch, storage_options=options, description=spec.description)
        upstream_uri = job.upstream.get(spec.source.inputs[0]) if spec.source.type == "table" else None
        tasks = [Task({"spec": job.spec, "part": part, "request": request, "input_schema": input_schema, "upstream_uri": upstream_uri,
                  "storage_options": options, "batch_rows": job.batch_rows, "require_declared_privacy": job.require_declared_privacy})
                 for part in parts]
        with cluster_client(settings) as client:
            futures = _submit(client, spec, tasks)
            try:
                results = client.gather(futures)
            finally:
                client.cancel(futures)
    except BuildFailed:
        raise
    except Exception as exc:
        raise classify_failure(job.name, exc) from None
    return _commit(job, spec, table, batch, spool_dir, metadata, key, request, results, reason)


def _submit(client: Any, spec: Any, tasks: list[dict[str, Any]]) -> list[Any]:
    """The partition tasks; with a dedupe, a shuffle first: every partition split into as many buckets
    by key hash, then one task per bucket gets that bucket's pieces of every partition (each piece moves
    once, worker to worker) and runs the whole pipeline, dedupe included, over rows that hold all of
    their keys."""
    import operator

    if spec.clean is None or spec.clean.dedupe is None:
        return client.map(run_part, tasks, pure=False)
    buckets = len(tasks)
    splits = client.map(split_part, [Task({**t, "keys": list(spec.clean.dedupe.keys), "buckets": buckets}) for t in tasks], pure=False)
    futures = []
    for i in range(buckets):
        pieces = [client.submit(operator.getitem, split, i, pure=False) for split in splits]
        futures.append(client.submit(run_part, Task({**tasks[0], "part": None}), *pieces, pure=False))
    return futures


def _commit(job: Any, spec: Any, table: Any, batch: int, spool_dir: Path, metadata: dict[str, str], key: str,
            request: Any, results: list[dict[str, Any]], reason: bool) -> BuildReport:
    """The partitions' files, counters, checks and digests merged into the one commit of this build."""
    from flows.tables import build as duck
    from flows.tables import stages
    from flows.tables.digest import _MOD, RowDigest
    from flows.tables.privacy_scan import key_ids
    from flows.tables.write import StagedFiles, commit_staged

    uri, options = request.uri, request.storage_options
    refused = sorted({c for r in results for c in (r["refused"] or [])})
    if refused:
        raise BuildFailed(f"table {job.name}: column(s) {', '.join(refused)} hold values that look like personal "
                          "data and have no privacy declaration (privacy.require_declared); nothing was written",
                          reason="PrivacyUndeclared")
    action = spec.quality.action if spec.quality is not None else "quarantine"
    counts = {name: sum(r[name] for r in results) for name in ("written", "quarantined", "deduplicated")}
    failures: dict[str, int] = {}
    for r in results:
        for check, n in r["failures"].items():
            failures[check] = failures.get(check, 0) + n
    checks = stages.TableChecks(spec.quality)
    if checks.stats is not None:
        checks.stats.row_count = sum(r["row_count"] for r in results)
        newest = [r["newest"] for r in results if r["newest"] is not None]
        checks.stats.newest = max(newest) if newest else None
    failed_checks = {k: v for k, v in failures.items() if not k.endswith(".cast")}
    table_failures = checks.failures()
    for check, _ in table_failures:
        failed_checks[check] = failed_checks.get(check, 0) + 1
        failures[check] = failures.get(check, 0) + 1
    status = "passed" if not failed_checks else {"fail": "failed", "warn": "warned"}.get(action, "quarantined")
    quality = {"status": status, "failures": failures, "action": action, "table_checks": dict(table_failures)}
    if status == "failed":
        details = ", ".join(f"{k}: {v}" for k, v in sorted(failed_checks.items()))
        raise BuildFailed(f"table {job.name}: quality checks failed ({details}); nothing was written", reason="QualityFailed")
    rows = account_rows(job.name, sum(r["read"] for r in results), counts, None, False)
    meta = dict(metadata)
    meta.update({f"{ROWS_PREFIX}{k}": str(v) for k, v in rows.items()})
    meta[QUALITY] = json.dumps(quality, sort_keys=True)
    meta[BATCH] = str(batch)
    if spec.privacy is not None and (ids := key_ids(spec.privacy, duck._resolve_secret)):
        meta[PRIVACY_KEYS] = json.dumps(ids, sort_keys=True)
    warned = sorted({p for r in results for p in r["personal"] if p != "-"})
    if warned:
        meta[PRIVACY_WARNINGS] = json.dumps(warned)
    meta[DATA_ID] = key if spec.write.mode == "overwrite" else f"{key}@{batch}"
    digest = RowDigest()
    digest.total = sum(r["digest"][0] for r in results) % _MOD
    digest.rows = sum(r["digest"][1] for r in results)
    previous = duck._latest_metadata(uri, options)
    meta[DATA_DIGEST] = digest.value(spec.write.mode, previous.get(DATA_DIGEST) if table is not None else None)
    if spec.write.mode != "overwrite" and table is not None and rows["read"] == 0 and previous.get(BUILD_KEY) == key:
        return BuildReport(job.name, table.version(), False, rows, quality, None, NO_NEW_ROWS)
    spool = quarantine_store.Spool(spool_dir, batch) if reason else None  # as the DuckDB engine: rows that can fail
    if spool is not None:
        for r in results:
            for bad in r["quarantine"]:
                spool.add(bad)
    spool_path = spool.close(duck._quarantine_schema(request.schema)) if spool is not None else None
    meta.update(quarantine_lineage(job.storage_root, job.name, batch if spool_path is not None else None, options))
    staged = StagedFiles(request)
    for r in results:
        staged.adds.extend(r["adds"])
        staged.paths.extend(r["paths"])
    version = commit_staged(request, staged, meta)
    if spool_path is not None:
        quarantine_store.commit(job.storage_root, job.name, batch, spool_path, spec.write.mode, meta, options)
        spool_path.unlink(missing_ok=True)
    summary = duck._summary(rows, quality) + f" (dask engine, {len(results)} partitions)"
    if warned:
        summary += f" (privacy warning: undeclared personal-looking column(s) {', '.join(warned)})"
    return BuildReport(job.name, version, True, rows, quality, None, summary)
