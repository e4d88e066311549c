"""Build one table: source → DuckDB → clean → features → quality → privacy → table + quarantine.

One streaming pass: the source's Arrow batches flow through DuckDB views (one per stage), come out as
record batches, get their PII protected, are split into good and quarantined rows, and are written as
Parquet files that one Delta commit makes visible, together with the row accounting, the watermark and
the lineage (fingerprint, git sha, build key, upstream data ids). Memory is bounded by the batch size
and DuckDB's memory limit (it spills), never by the input size. When cleaning is declared the input is
first staged into a DuckDB table (its counters scan it twice; dedup and median fills need it whole).

Runs in its own process (`python -m flows.tables.build JOB RESULT`, started with spawn semantics) so
a crash or a deltalake panic cannot take the daemon down, and a kill -9 anywhere leaves no half version.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from daemon.shared.fsio import atomic_write_json
from flows.tables import (
    BATCH,
    BUILD_KEY,
    DATA_DIGEST,
    DATA_ID,
    FINGERPRINT,
    GIT_SHA,
    INGESTED,
    INPUT_DIGEST,
    META_DIGEST,
    OPERATION,
    PRIVACY_KEYS,
    PRIVACY_WARNINGS,
    PRUNE,
    QUALITY,
    QUARANTINE_BATCH,
    QUARANTINE_VERSION,
    ROLE,
    ROWS_PREFIX,
    SPEC,
    TABLE,
    UPSTREAM,
    WATERMARK,
    build_key,
    table_uri,
)
from flows.tables import quarantine as quarantine_store
from flows.tables.digest import RowDigest
from flows.tables.report import (
    NO_NEW_ROWS,
    BuildFailed,
    BuildReport,
    account_rows,
    classify_failure,
    quarantine_lineage,
)
from flows.tables.sources import SourceContext, input_digest, read_source
from flows.tables.stages import REASON_COLUMN, StageError
from flows.tables.watermark import Watcher, decode_watermark
from flows.tables.write import (
    StagedFiles,
    WriteRequest,
    commit_staged,
    declared_schema,
    merge,
    next_batch,
    open_table,
    plan_schema,
    table_schema,
)


@dataclass(frozen=True)
class BuildJob:
    """Everything a build needs, as plain JSON-able data (it crosses a process boundary)."""

    name: str
    spec: dict[str, Any]  # normalised TableSpec (by alias)
    fingerprint: str
    git_sha: str
    storage_root: str
    data_root: str
    repo_dir: str
    state_dir: str  # local, durable: locks, quarantine spools, DuckDB spill files
    upstream: dict[str, str] = field(default_factory=dict)  # table name -> Delta URI
    storage_options: dict[str, str] = field(default_factory=dict)  # resolved
    prune: bool | None = None
    allowed_modules: tuple[str, ...] = ("flows.tables.sources.",)
    batch_rows: int = 131_072
    duckdb_memory_limit: str = "2GB"
    meta_digest: str = ""  # digest of the spec's metadata fields, recorded so `observe` sees metadata edits
    require_declared_privacy: bool = False  # env privacy.require_declared: personal-looking values fail the build
    tls: dict[str, Any] = field(default_factory=dict)  # env tls (daemon.shared.tls.settings, refs kept): sources' CA
    dask: dict[str, Any] = field(default_factory=dict)  # env tables.dask, for `engine: dask` tables (flows.tables.dask_engine)


@contextmanager
def table_lock(state_dir: str, name: str) -> Iterator[None]:
    """One build of a table at a time on this machine (the daemon and a scheduled refresh may race)."""
    import fcntl

    directory = Path(state_dir) / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upstream_ids(job: BuildJob, names: list[str]) -> dict[str, str]:
    """The data id of each upstream table as it is now (what this build is about to read)."""
    from flows.tables.delta_log import read_table_log

    ids = {}
    for name in names:
        log = read_table_log(job.upstream.get(name, table_uri(job.storage_root, name)), job.storage_options or None)
        latest = log.latest if log else None
        ids[name] = str(latest.metadata.get(DATA_ID, "")) if latest else "missing"
    return ids


def run_build(job: BuildJob) -> BuildReport:
    from daemon.schema.table import TableSpec
    from flows.tables import quarantine_name
    from flows.tables.partial import no_partial_files

    spec = TableSpec.model_validate(job.spec)
    written = [table_uri(job.storage_root, job.name), table_uri(job.storage_root, quarantine_name(job.name))]
    with table_lock(job.state_dir, job.name), no_partial_files(written):  # a failed build leaves no files
        if spec.engine == "dask":
            from flows.tables import dask_engine

            return dask_engine.build(job, spec)
        return _build(job, spec)


def _metadata(job: BuildJob, key: str, digest: str | None, upstream: dict[str, str]) -> dict[str, str]:
    return {
        FINGERPRINT: job.fingerprint,
        GIT_SHA: job.git_sha,
        TABLE: job.name,
        ROLE: "table",
        OPERATION: "build",
        PRUNE: "" if job.prune is None else str(job.prune).lower(),
        BUILD_KEY: key,
        INPUT_DIGEST: digest or "",
        UPSTREAM: json.dumps(upstream, sort_keys=True),
        META_DIGEST: job.meta_digest,
        SPEC: json.dumps(job.spec, sort_keys=True, separators=(",", ":"), default=str),
    }


def _build(job: BuildJob, spec: Any) -> BuildReport:
    import duckdb

    from flows.tables import stages
    from flows.tables.expressions import check_table_expressions
    from flows.tables.sql_guard import sandbox

    refused = check_table_expressions(spec)  # validate checks the same; a bypassed validate ends here
    if refused:
        raise BuildFailed("; ".join(f"table {job.name}: {'.'.join(map(str, path))}: {message}" for path, message in refused),
                          reason="SpecRefused")

    uri = table_uri(job.storage_root, job.name)
    options = job.storage_options or None
    table = open_table(uri, options)
    batch = next_batch(table, job.name)
    spool_dir = Path(job.state_dir) / "quarantine-pending" / job.name
    latest_meta = _latest_metadata(uri, options)
    quarantine_store.recover(spool_dir, job.storage_root, job.name, batch - 1, spec.write.mode, lambda b: latest_meta, options)

    cursor = spec.cursor
    watermark = decode_watermark(latest_meta.get(WATERMARK)) if cursor and table is not None else None
    ctx = SourceContext(
        table=job.name, data_root=Path(job.data_root), repo_dir=Path(job.repo_dir), upstream=job.upstream,
        storage_options=job.storage_options, cursor=cursor, watermark=watermark,
        resolve_secret=_resolve_secret, allowed_modules=tuple(job.allowed_modules), batch_rows=job.batch_rows,
        tls=job.tls,
    )
    if getattr(spec.source, "ingest", "all") == "new_files" and table is not None:
        ctx.lineage["ingested"] = json.loads(latest_meta.get(INGESTED) or "[]")
    digest = input_digest(spec.source, ctx)  # before reading: a change during the build makes it stale
    upstream = upstream_ids(job, spec.upstream_tables())
    key = build_key(job.fingerprint, digest, upstream)
    metadata = _metadata(job, key, digest, upstream)

    work = Path(tempfile.mkdtemp(prefix=f"build-{job.name}-", dir=_ensure(Path(job.state_dir) / "tmp")))
    connection = duckdb.connect(str(work / "build.duckdb"))
    watcher: Watcher | None = None
    try:
        watcher = Watcher(read_source(spec.source, ctx), cursor, watermark)
        if "files" in ctx.lineage:  # a landing folder: the files this commit ingests, recorded with it
            metadata[INGESTED] = json.dumps(ctx.lineage["files"])
        if watcher.columnless or (table is not None and _incremental(spec) and not watcher.has_new_rows()):
            return _nothing_read(job, spec, table, batch, metadata, latest_meta, key)
        connection.execute(f"SET memory_limit = '{job.duckdb_memory_limit}'")
        connection.execute(f"SET temp_directory = '{work / 'spill'}'")
        connection.execute("SET preserve_insertion_order = false" if spec.clean or spec.features else "SET preserve_insertion_order = true")
        sandbox(connection, [str(work)])  # spec SQL runs here: no files but our spill, no settings, no extensions
        connection.register("_specd_stream", watcher.reader())
        view, reason, counts_sql, group_rows = "_specd_stream", False, None, None
        if spec.clean is not None:
            # Deduplicated rows are counted in the stream itself (each kept row carries its key group's
            # size) unless an aggregating feature stage folds rows away; then, when rows can also be
            # filtered, the counters need the input staged and scanned a second time.
            aggregates = spec.features is not None and spec.features.aggregate is not None
            in_stream = spec.clean.dedupe is not None and not aggregates
            twice = spec.clean.dedupe is not None and aggregates and _clean_filters(spec.clean)
            if twice:
                connection.execute("CREATE TABLE _specd_input AS SELECT * FROM _specd_stream")
            result = stages.clean(connection, "_specd_input" if twice else "_specd_stream", spec.clean, group_rows=in_stream)
            view, reason, group_rows = result.view, result.carries_reason, result.group_rows_column
            counts_sql = result.counts_sql if twice else None
        if spec.features is not None:
            joined = spec.features.referenced_tables()
            if joined:
                from flows.tables.sources.tables import register_upstream

                register_upstream(connection, joined, ctx)
            carried = (group_rows,) if group_rows else ()
            result = stages.features(connection, view, spec.features, {n: n for n in joined}, reason, carried)
            view, reason = result.view, result.carries_reason
        if spec.quality is not None:
            result = stages.quality(connection, view, spec.quality, reason)
            view, reason = result.view, result.carries_reason
        return _stream_and_write(job, spec, connection, view, reason, table, batch, spool_dir, metadata, watcher, key,
                                 counts_sql, group_rows)
    except BuildFailed:
        raise
    except Exception as exc:
        # A failure inside the source stream surfaces as DuckDB's (or Arrow's) own error: report the
        # source's original one, with its transient-ness, instead.
        original = watcher.error if watcher is not None and watcher.error is not None else exc
        raise classify_failure(job.name, original, from_source=original is not exc) from None
    finally:
        connection.close()
        _remove_tree(work)


def _nothing_read(job: BuildJob, spec: Any, table: Any, batch: int, metadata: dict[str, str], latest_meta: dict[str, Any],
                  key: str) -> BuildReport:
    """The source returned no records and so no columns (an HTTP API with nothing new). An incremental
    table just has no new rows: nothing is committed while its build key is unchanged; after a spec
    change an empty commit records the new lineage with the same watermark. Anything else cannot be
    built from nothing, and says so."""
    from flows.tables import ROW_COUNTERS

    if table is None or not _incremental(spec):
        what = "create the table from" if table is None else "rebuild the table from (it is left as it is)"
        raise BuildFailed(f"table {job.name}: the source returned no records, so not even its columns are known: "
                          f"nothing to {what}", reason="EmptySource")
    rows = dict.fromkeys(ROW_COUNTERS, 0)
    quality = {"status": "passed", "failures": {}, "action": spec.quality.action if spec.quality else "quarantine", "table_checks": {}}
    watermark = latest_meta.get(WATERMARK)
    if latest_meta.get(BUILD_KEY) == key:
        return BuildReport(job.name, table.version(), False, rows, quality, decode_watermark(watermark), NO_NEW_ROWS)
    meta = dict(metadata)
    meta.update({f"{ROWS_PREFIX}{k}": "0" for k in rows})
    meta.update({QUALITY: json.dumps(quality, sort_keys=True), BATCH: str(batch), DATA_ID: str(latest_meta.get(DATA_ID, ""))})
    for carried in (WATERMARK, QUARANTINE_BATCH, QUARANTINE_VERSION, INGESTED, DATA_DIGEST):
        if latest_meta.get(carried) is not None:
            meta[carried] = str(latest_meta[carried])
    uri = table_uri(job.storage_root, job.name)
    request = WriteRequest(uri, job.name, "append", table_schema(table), batch=batch, storage_options=job.storage_options or None)
    version = commit_staged(request, StagedFiles(request), meta)  # no files: lineage only
    return BuildReport(job.name, version, True, rows, quality, decode_watermark(watermark), f"{NO_NEW_ROWS} (lineage recorded)")


def _stream_and_write(job: BuildJob, spec: Any, connection: Any, view: str, reason: bool, table: Any, batch: int,
                      spool_dir: Path, metadata: dict[str, str], watcher: Watcher, key: str, counts_sql: str | None,
                      group_rows: str | None = None) -> BuildReport:
    import pyarrow as pa
    import pyarrow.compute as pc

    from flows.tables import stages
    from flows.tables.write import cast_batch

    uri = table_uri(job.storage_root, job.name)
    options = job.storage_options or None
    out = connection.sql(f'SELECT * FROM "{view}"').to_arrow_reader(job.batch_rows)
    protect, protected_schema = stages.protector(spec.privacy, _resolve_secret)
    bookkeeping = [c for c in (REASON_COLUMN if reason else None, group_rows) if c]
    produced = pa.schema([f for f in out.schema if f.name not in bookkeeping])
    output_schema = protected_schema(produced) if protected_schema else produced
    missing_partitions = [c for c in spec.partition_by if c not in output_schema.names]
    if missing_partitions:
        raise StageError(f"partition_by: {missing_partitions} not among the output columns {output_schema.names}")
    if spec.write.mode == "merge":
        missing_keys = [k for k in spec.write.keys if k not in output_schema.names]
        if missing_keys:
            raise StageError(f"write.keys: {missing_keys} not among the output columns {output_schema.names}")
    declared = declared_schema(spec.schema_.columns) if spec.schema_.columns else None
    target, schema_mode = plan_schema(output_schema, table_schema(table), declared, spec.schema_.policy, job.name)
    action = spec.quality.action if spec.quality is not None else "quarantine"
    spool = quarantine_store.Spool(spool_dir, batch) if reason else None
    counts = {"written": 0, "quarantined": 0, "deduplicated": 0}
    failures: dict[str, int] = {}
    checks = stages.TableChecks(spec.quality)  # row count / freshness over the written batches: no rescan
    digest = RowDigest()
    personal: list[str] = []

    def good_rows() -> Iterator[pa.RecordBatch]:
        from flows.tables.privacy_scan import undeclared

        for raw in out:
            if not personal and raw.num_rows and not counts["written"] + counts["quarantined"]:  # first batch: sample it
                personal.extend(undeclared(raw.drop_columns(bookkeeping), spec.privacy) or ["-"])
                if personal != ["-"] and job.require_declared_privacy:
                    raise BuildFailed(f"table {job.name}: column(s) {', '.join(personal)} hold values that look like personal "
                                      "data and have no privacy declaration (privacy.require_declared); nothing was written",
                                      reason="PrivacyUndeclared")
            if group_rows:  # each kept row stands for its whole key group
                counts["deduplicated"] += int(pc.sum(raw.column(group_rows)).as_py() or 0) - raw.num_rows
                raw = raw.drop_columns([group_rows])
            if protect:  # protect first: plaintext never reaches a file, quarantine included
                reasons = raw.column(REASON_COLUMN) if reason else None
                body = protect(raw.drop_columns([REASON_COLUMN]) if reason else raw)
                raw = body.append_column(REASON_COLUMN, reasons) if reason else body
            if not reason:
                counts["written"] += raw.num_rows
                checks.add(raw)
                written = cast_batch(raw, target)
                digest.add(written)
                yield written
                continue
            reasons = raw.column(REASON_COLUMN)
            failed = pc.is_valid(reasons)
            if pc.any(failed).as_py():
                for check, n in stages.failure_counts(reasons).items():
                    failures[check] = failures.get(check, 0) + n
            if action == "warn":
                quarantined = pc.and_(failed, pc.match_substring(reasons, ".cast"))
            elif action == "fail":
                quarantined = pc.and_(failed, pc.match_substring(reasons, ".cast"))
            else:
                quarantined = failed
            quarantined = pc.fill_null(quarantined, False)
            bad = raw.filter(quarantined)
            if bad.num_rows:
                spool.add(bad)
                counts["quarantined"] += bad.num_rows
            good = raw.filter(pc.invert(quarantined)).drop_columns([REASON_COLUMN])
            counts["written"] += good.num_rows
            checks.add(good)
            written = cast_batch(good, target)
            digest.add(written)
            yield written

    request = WriteRequest(uri, job.name, spec.write.mode, target, tuple(spec.write.keys), tuple(spec.partition_by),
                           schema_mode, batch=batch, storage_options=options, description=spec.description)
    merging = spec.write.mode == "merge" and table is not None
    staging_dir = Path(job.state_dir) / "tmp" / f"merge-{job.name}-{batch}" if merging else None
    staged = StagedFiles(request, str(staging_dir) if staging_dir else None)
    try:
        staged.write(good_rows())
        failed_checks = {k: v for k, v in failures.items() if not k.endswith(".cast")}
        nothing_new = spec.cursor is not None and table is not None and watcher.rows == 0
        table_failures = [] if nothing_new else checks.failures()  # an unchanged table keeps its verdict
        for check, _ in table_failures:
            failed_checks[check] = failed_checks.get(check, 0) + 1
            failures[check] = failures.get(check, 0) + 1
        status = "passed" if not failed_checks else {"fail": "failed", "warn": "warned"}.get(action, "quarantined")
        quality = {"status": status, "failures": failures, "action": action, "table_checks": dict(table_failures)}
        if status == "failed":
            if spool:
                spool.discard()
            details = ", ".join(f"{k}: {v}" for k, v in sorted(failed_checks.items()))
            raise BuildFailed(f"table {job.name}: quality checks failed ({details}); nothing was written", reason="QualityFailed")
        clean_counts = connection.execute(counts_sql).fetchone() if counts_sql else None
        aggregates = spec.features is not None and spec.features.aggregate is not None
        rows = account_rows(job.name, watcher.rows, counts, clean_counts, aggregates)
        meta = dict(metadata)
        meta.update({f"{ROWS_PREFIX}{k}": str(v) for k, v in rows.items()})
        meta[QUALITY] = json.dumps(quality, sort_keys=True)
        meta[BATCH] = str(batch)
        from flows.tables.privacy_scan import key_ids

        if spec.privacy is not None and (ids := key_ids(spec.privacy, _resolve_secret)):
            meta[PRIVACY_KEYS] = json.dumps(ids, sort_keys=True)
        warned = [p for p in personal if p != "-"]
        if warned:
            meta[PRIVACY_WARNINGS] = json.dumps(warned)
        meta[DATA_ID] = key if spec.write.mode == "overwrite" else f"{key}@{batch}"
        meta[DATA_DIGEST] = digest.value(spec.write.mode, _latest_metadata(uri, options).get(DATA_DIGEST) if table is not None else None)
        new_watermark = watcher.watermark_json()
        if new_watermark is not None:
            meta[WATERMARK] = new_watermark

        if spec.write.mode != "overwrite" and table is not None and rows["read"] == 0 and _latest_metadata(uri, options).get(BUILD_KEY) == key:
            if spool:
                spool.discard()
            return BuildReport(job.name, table.version(), False, rows, quality, watcher.max_value, NO_NEW_ROWS)
        spool_path = spool.close(_quarantine_schema(target)) if spool else None
        meta.update(quarantine_lineage(job.storage_root, job.name, batch if spool_path is not None else None, options))
        if merging:
            import pyarrow.dataset as ds

            source = ds.dataset(str(staging_dir), format="parquet", schema=target).scanner().to_reader()
            version = merge(request, source, meta, delete_missing=spec.cursor is None)
        else:
            version = commit_staged(request, staged, meta)
        if spool_path is not None:
            quarantine_store.commit(job.storage_root, job.name, batch, spool_path, spec.write.mode, meta, options)
            spool_path.unlink(missing_ok=True)
        summary = _summary(rows, quality)
        if warned:
            summary += f" (privacy warning: undeclared personal-looking column(s) {', '.join(warned)})"
        return BuildReport(job.name, version, True, rows, quality, watcher.max_value, summary)
    finally:
        if staging_dir is not None:
            _remove_tree(staging_dir)


def _incremental(spec: Any) -> bool:
    """Sources that only deliver what is new: a cursor past the watermark, or files not yet ingested."""
    return spec.cursor is not None or getattr(spec.source, "ingest", "all") == "new_files"


def _clean_filters(clean: Any) -> bool:
    return bool(clean.where) or any(r.nulls is not None and r.nulls.strategy == "drop" for r in clean.columns.values())


def _quarantine_schema(target: Any) -> Any:
    import pyarrow as pa

    return target.append(pa.field(REASON_COLUMN, pa.string()))


def _summary(rows: dict[str, int], quality: dict[str, Any]) -> str:
    text = f"{rows['written']} rows written"
    for name in ("quarantined", "deduplicated", "filtered"):
        if rows[name]:
            text += f", {rows[name]} {name}"
    if quality.get("status") in ("warned", "quarantined"):
        text += " (quality warnings)"
    return text


def _latest_metadata(uri: str, options: dict[str, str] | None) -> dict[str, Any]:
    from flows.tables.delta_log import read_table_log

    log = read_table_log(uri, options)
    return dict(log.latest.metadata) if log and log.latest else {}


def _resolve_secret(ref: str) -> str:
    from daemon.shared.secrets import resolve_secret

    return resolve_secret(ref)


def _ensure(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def run_job(data: dict[str, Any]) -> dict[str, Any]:
    """Run a build from its JSON form; the result payload (`ok`, rows, version... or `error`, `reason`,
    `transient`). Entry point of the build worker processes and of `main`."""
    from daemon.shared import scrub

    scrub.install()  # worker processes log and report errors: no secret value in either
    data = dict(data)
    data["allowed_modules"] = tuple(data.get("allowed_modules", ()))
    try:
        report = run_build(BuildJob(**data))
    except BuildFailed as exc:
        return scrub.scrub_obj(_disk_full(data, exc) or {"ok": False, "error": str(exc), "reason": exc.reason, "transient": exc.transient})
    except OSError as exc:
        return scrub.scrub_obj(_os_failure(data, exc))
    except Exception as exc:  # a bug or an engine error we did not classify: report it, keep the worker
        first = str(exc).splitlines()[0] if str(exc) else ""
        return scrub.scrub_obj(_disk_full(data, exc) or {"ok": False, "error": f"table {data.get('name')}: {type(exc).__name__}: {first}", "reason": "BuildError", "transient": False})
    return scrub.scrub_obj({"ok": True, **asdict(report)})


def _disk_full(data: dict[str, Any], exc: BaseException) -> dict[str, Any] | None:
    """The failure payload for ENOSPC: "no space left on <path>", retryable once space is back."""
    from flows.tables.partial import disk_full_path, is_disk_full

    if not is_disk_full(exc):
        return None
    where = disk_full_path(exc, local_table_dir(data))
    return {"ok": False, "transient": True, "reason": "DiskFull",
            "error": f"table {data.get('name')}: no space left on {where}; nothing was committed and the partial files were removed"}


def _os_failure(data: dict[str, Any], exc: OSError) -> dict[str, Any]:
    return _disk_full(data, exc) or {"ok": False, "error": f"table {data.get('name')}: {type(exc).__name__}: {exc}", "reason": "BuildError", "transient": False}


def local_table_dir(data: dict[str, Any]) -> str:
    from flows.tables import is_local, local_path

    uri = table_uri(str(data.get("storage_root", "")), str(data.get("name", "")))
    return local_path(uri) if is_local(uri) else uri


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.tables.build JOB.json RESULT.json`: exit 0 ok, 2 failed, 3 failed but retryable."""
    args = argv if argv is not None else sys.argv[1:]
    job_path, result_path = Path(args[0]), Path(args[1])
    payload = run_job(json.loads(job_path.read_text()))
    code = 0 if payload["ok"] else (3 if payload.get("transient") else 2)
    atomic_write_json(result_path, payload, durable=False, indent=None)  # read once by the adapter
    return code


if __name__ == "__main__":
    sys.exit(main())
