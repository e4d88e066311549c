"""Quarantined rows: spooled during the build, committed to `<table>__quarantine` after the table.

Rows failing a check (or a cast with `on_cast_error: quarantine`) are streamed to a spool file while
the good rows stream into the table. The spool is renamed into place only when complete, and named by
the build number (the table's app-transaction version). After the table commit, the spool is committed
to the quarantine table under the same number; a build killed between the two commits is completed by
`recover` on the next run, and a build killed before the table commit has its spool discarded. Either
way each quarantined row lands exactly once, next to the batch that produced it.

Each table commit records which quarantine state goes with it (`specd.quarantine_batch` /
`specd.quarantine_version`, see build.quarantine_lineage), so restoring the table to an earlier version
brings its quarantine back to the matching version too (`restore_matching`) instead of leaving the
rows quarantined by a later build next to a table that no longer has them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.tables import (
    BATCH,
    FINGERPRINT,
    GIT_SHA,
    OPERATION,
    QUARANTINE_BATCH,
    QUARANTINE_VERSION,
    ROLE,
    TABLE,
    quarantine_name,
    table_uri,
)
from flows.tables.write import app_id, open_table

if TYPE_CHECKING:
    import pyarrow as pa


class Spool:
    """A Parquet file of quarantined rows for build `batch`, visible under its final name only when closed."""

    def __init__(self, directory: Path, batch: int):
        self.directory = directory
        self.final = directory / f"{batch:012d}.parquet"
        self.partial = directory / f"{batch:012d}.parquet.partial"
        self.writer: Any = None
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.partial, batch.schema)
        if batch.num_rows:
            self.writer.write_batch(batch)
            self.rows += batch.num_rows

    def close(self, schema: pa.Schema) -> Path:
        import pyarrow.parquet as pq

        if self.writer is None:  # no rows at all: an empty file still records "zero quarantined"
            self.directory.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.partial, schema)
        self.writer.close()
        with open(self.partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.partial, self.final)
        return self.final

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.partial.unlink(missing_ok=True)


def commit(storage_root: str, name: str, batch: int, spool: Path, mode: str, metadata: dict[str, str], storage_options: dict[str, str] | None = None) -> bool:
    """Commit one spool to the quarantine table unless build `batch` is already there. True if committed."""
    import pyarrow.dataset as ds
    from deltalake import CommitProperties, Transaction, write_deltalake

    q_name = quarantine_name(name)
    uri = table_uri(storage_root, q_name)
    existing = open_table(uri, storage_options)
    if existing is not None and (existing.transaction_version(app_id(q_name)) or 0) >= batch:
        return False
    data = ds.dataset(str(spool), format="parquet").scanner().to_reader()  # streamed: bounded memory
    overwrite = mode == "overwrite"
    meta = {k: v for k, v in metadata.items() if k in (FINGERPRINT, GIT_SHA)}
    meta.update({TABLE: name, ROLE: "quarantine", OPERATION: "build", BATCH: str(batch)})
    write_deltalake(
        uri,
        data,
        mode="overwrite" if overwrite or existing is None else "append",
        schema_mode="overwrite" if overwrite else ("merge" if existing is not None else None),
        storage_options=storage_options,
        commit_properties=CommitProperties(custom_metadata=meta, app_transactions=[Transaction(app_id(q_name), batch)]),
    )
    return True


def recover(directory: Path, storage_root: str, name: str, committed_batch: int, mode: str, metadata_of: Any, storage_options: dict[str, str] | None = None) -> int:
    """Finish what a killed build left: commit spools of committed builds, drop the others. Returns commits made."""
    if not directory.is_dir():
        return 0
    done = 0
    for path in sorted(directory.iterdir()):
        if path.name.endswith(".partial"):
            path.unlink(missing_ok=True)
            continue
        if not path.name.endswith(".parquet"):
            continue
        batch = int(path.name.split(".")[0])
        if batch <= committed_batch:
            done += commit(storage_root, name, batch, path, mode, metadata_of(batch), storage_options)
        path.unlink(missing_ok=True)
    return done


def restore_matching(storage_root: str, name: str, table_metadata: dict[str, Any], git_sha: str,
                     storage_options: dict[str, str] | None = None) -> str:
    """Bring `<name>__quarantine` back to the state recorded with a table commit (its metadata); returns
    a note for the restore message ("" when nothing had to change). The recorded version is used when
    the commit there carries the recorded build number; otherwise (a maintenance commit took that
    version number) the latest commit of that build number, which holds the same rows."""
    from deltalake import CommitProperties, DeltaTable

    from flows.tables.delta_log import read_table_log
    from flows.tables.write import commit_with_retries

    batch, version = table_metadata.get(QUARANTINE_BATCH), table_metadata.get(QUARANTINE_VERSION)
    q_name = quarantine_name(name)
    uri = table_uri(storage_root, q_name)
    log = read_table_log(uri, storage_options)
    if batch is None or version is None or log is None or log.latest is None:
        return ""  # committed before quarantine lineage was recorded, or no quarantine table to roll back
    batch = str(batch)
    base = {FINGERPRINT: str(table_metadata.get(FINGERPRINT, "")), GIT_SHA: git_sha, TABLE: name, ROLE: "quarantine",
            OPERATION: "restore"}
    table = DeltaTable(uri, storage_options=storage_options)
    if str(version) == "-1":  # the table version had no quarantine yet: nothing was quarantined then
        if str(log.latest.metadata.get(BATCH)) == "-1" or not table.to_pyarrow_dataset().count_rows():
            return ""
        meta = {**base, BATCH: "-1"}
        commit_with_retries(lambda: table.delete(commit_properties=CommitProperties(custom_metadata=meta)), q_name)
        return "; quarantine emptied (none at that version)"
    if str(log.latest.metadata.get(BATCH)) == batch:
        return ""  # already holds that build's quarantine state (also after a compaction or an earlier restore)
    same_build = [c for c in log.commits if str(c.metadata.get(BATCH)) == batch]
    target = next((c for c in same_build if str(c.version) == str(version)), same_build[-1] if same_build else None)
    if target is None or not target.complete:
        return f"; its quarantine state of build {batch} is no longer there (vacuumed): quarantine left as it is"
    meta = {**{k: str(v) for k, v in target.metadata.items()}, **base, BATCH: batch, "specd.restored_from": str(target.version)}
    commit_with_retries(lambda: table.restore(target.version, commit_properties=CommitProperties(custom_metadata=meta)), q_name)
    return f"; quarantine restored to its version {target.version}"
