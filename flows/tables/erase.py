"""Right to erasure: find one subject's rows in every Delta table and log, delete them, vacuum the files.

A subject is `COLUMN=VALUE` (`customer_email=ann@example.com`). Where the column is kept matters:

- in clear: the rows where the column equals the value;
- hashed (`privacy: hash`): the value's HMAC-SHA256 hex under the table's key — the same digest the
  build wrote, so one equality predicate finds it;
- encrypted (`privacy: encrypt`): AES-GCM with a fresh nonce per value, so no predicate can find it;
  the column is read and decrypted in batches and the matching rows are identified by their exact
  ciphertexts (unique per row by construction);
- masked, generalised or dropped: the value cannot be recognised any more and the step says so;
- the prediction/feedback logs keep the request's features as JSON: the (request_id, row) pairs whose
  features carry the value are removed from both logs.

Each table is rewritten without those rows in one overwrite commit whose metadata (`specd.erasure`)
records the request — its id, the column and a salted SHA-256 of the value, never the value. Not
`DeltaTable.delete(predicate)`: Delta writes a delete's predicate into the commit log, and here the
predicate *is* the value (or its digest, or its ciphertexts). The latest build's specd.* keys are
carried over (the table is not rebuilt from a source that may still hold the subject), with a new data
id so that downstream tables rebuild. A vacuum follows: at once (`retention_hours=0`, plus expiry of
the log entries before a fresh checkpoint, which list the removed files' min/max statistics) when
asked, else at the table's retention.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ERASURE = "specd.erasure"  # commit-metadata key of an erasure commit (JSON, no clear value)
BATCH_ROWS = 65536


@dataclass(frozen=True)
class Target:
    """One Delta table that may hold the subject's rows."""

    name: str
    uri: str
    mode: str | None = None  # the column's privacy mode here: None (clear), hash, encrypt, mask, ...
    key: bytes | None = field(default=None, repr=False)
    kind: str = "table"  # table | predictions | feedback
    retention_hours: float | None = None
    storage_options: Mapping[str, str] | None = None


@dataclass
class Step:
    """What will be (or was) deleted from one table: the rows whose `column` is one of `values`."""

    target: str
    uri: str
    how: str
    rows: int = 0
    column: str = ""
    values: list = field(default_factory=list, repr=False)  # digests, ciphertexts or "request_id\0row" keys
    version: int | None = None  # table version read by the plan
    note: str = ""
    removed_files: int = 0
    erased_version: int | None = None


def subject_digest(column: str, value: str, salt: bytes) -> str:
    """A salted SHA-256 of the subject: recorded instead of the value (confirmable only with the salt)."""
    return hmac.new(salt, f"{column}\0{value}".encode(), hashlib.sha256).hexdigest()


def new_salt() -> bytes:
    return secrets.token_bytes(16)


def _open(target: Target) -> Any:
    from deltalake import DeltaTable

    return DeltaTable(target.uri, storage_options=dict(target.storage_options) if target.storage_options else None)


def _exists(target: Target) -> bool:
    from deltalake import DeltaTable

    opts = dict(target.storage_options) if target.storage_options else None
    return DeltaTable.is_deltatable(target.uri, storage_options=opts)


def _schema(table: Any) -> Any:
    return table.to_pyarrow_dataset().schema


def _batches(table: Any, columns: list[str]) -> Iterable[Any]:
    return table.to_pyarrow_dataset().to_batches(columns=columns, batch_size=BATCH_ROWS)


def _row_keys(batch: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = pc.cast(batch.column("row"), pa.string())
    return pc.binary_join_element_wise(batch.column("request_id"), rows, "\0")


def _hits(batch: Any, step: Step) -> Any:
    """Boolean mask of the batch rows the step deletes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if step.column == "\0request":
        column = _row_keys(batch)
        values = pa.array(step.values, pa.string())
    else:
        column = batch.column(step.column)
        values = pa.array(step.values, column.type)
    return pc.fill_null(pc.is_in(column, value_set=values), False)


def _count(table: Any, step: Step) -> int:
    import pyarrow.compute as pc

    columns = ["request_id", "row"] if step.column == "\0request" else [step.column]
    return sum(pc.sum(_hits(b, step)).as_py() or 0 for b in _batches(table, columns))


def _plan_table(target: Target, column: str, value: str) -> Step:
    import pyarrow as pa

    table = _open(target)
    schema = _schema(table)
    step = Step(target.name, target.uri, "", column=column, version=table.version())
    if column not in schema.names:
        step.how, step.note = "skip", f"no column {column!r}"
        return step
    kind = schema.field(column).type
    mode = target.mode
    if mode is None:
        if pa.types.is_integer(kind) and value.lstrip("-").isdigit():
            step.values = [int(value)]
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            step.values = [value]
        else:
            step.how, step.note = "skip", f"column {column!r} is {kind}, not comparable to the value"
            return step
        step.how = "clear value"
    elif mode == "hash":
        step.how = "HMAC-SHA256 under the table's key"
        step.values = [hmac.new(target.key or b"", value.encode(), hashlib.sha256).hexdigest()]
    elif mode == "encrypt":
        from cryptography.exceptions import InvalidTag

        from flows.tables.privacy import decrypt_column

        try:
            for batch in _batches(table, [column]):
                cipher = batch.column(0)
                plain = decrypt_column(cipher, target.key or b"", column).to_pylist()
                step.values += [c for c, p in zip(cipher.to_pylist(), plain, strict=True) if p == value]
        except (InvalidTag, ValueError):
            step.how, step.values = "skip", []
            step.note = (f"column {column!r} does not decrypt with the table's current key (its secret was changed "
                         "in place?): rebuild the table under the new key, then erase")
            return step
        step.how = "decrypted in batches, matched by ciphertext"
        step.rows = len(step.values)
        return step
    else:
        step.how, step.note = "skip", f"column {column!r} is protected by {mode}: its value cannot be recognised"
        return step
    step.rows = _count(table, step)
    return step


def _plan_log(predictions: Target, feedback: Target | None, column: str, value: str) -> list[Step]:
    table = _open(predictions)
    keys: list[str] = []
    escaped = json.dumps(value)[1:-1]  # how the value reads inside JSON text (non-ASCII escaped)
    for batch in _batches(table, ["request_id", "row", "features"]):
        ids, rows, feats = (batch.column(i).to_pylist() for i in range(3))
        for request_id, row, text in zip(ids, rows, feats, strict=True):
            if text and (value in text or escaped in text):  # cheap pre-filter before parsing
                try:
                    features = json.loads(text)
                except ValueError:
                    continue
                if isinstance(features, dict) and str(features.get(column)) == value:
                    keys.append(f"{request_id}\0{row}")
    steps = [Step(predictions.name, predictions.uri, "request features (JSON)", len(keys), "\0request", keys, table.version())]
    if feedback is not None and _exists(feedback):
        log = _open(feedback)
        step = Step(feedback.name, feedback.uri, "feedback on those requests", 0, "\0request", keys, log.version())
        step.rows = _count(log, step) if keys else 0
        steps.append(step)
    return steps


def plan_erasure(column: str, value: str, tables: Iterable[Target], logs: Iterable[tuple[Target, Target | None]] = ()) -> list[Step]:
    """Every table and log that holds the subject, with the rows to delete (reads only)."""
    steps: list[Step] = []
    for target in tables:
        if not _exists(target):
            steps.append(Step(target.name, target.uri, "skip", note="not built"))
            continue
        steps.append(_plan_table(target, column, value))
    for predictions, feedback in logs:
        if _exists(predictions):
            steps += _plan_log(predictions, feedback, column, value)
    return steps


def _carried_metadata(table: Any) -> dict[str, str]:
    """The specd.* keys of the latest specd build (the table adapter's state), minus per-build counters."""
    from flows.tables import DATA_ID, FINGERPRINT, QUALITY, ROWS_PREFIX

    for commit in table.history(50):
        if FINGERPRINT in commit:
            out = {k: str(v) for k, v in commit.items() if k.startswith("specd.") and not k.startswith(ROWS_PREFIX)
                   and k not in (QUALITY, ERASURE)}
            if DATA_ID in out:  # new contents: downstream tables see a changed input and rebuild
                out[DATA_ID] = out[DATA_ID].split("~erased-")[0] + "~erased-" + secrets.token_hex(4)
            return out
    return {}


def apply_erasure(steps: list[Step], targets: Mapping[str, Target], request: Mapping[str, Any], *, vacuum_now: bool) -> list[Step]:
    """Rewrite each table without the planned rows (one commit carrying the request), then vacuum.

    Not `DeltaTable.delete(predicate)`: Delta records a delete's predicate in the commit log, and the
    predicate is the subject's value (or its digest or ciphertexts). An overwrite records none.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import CommitProperties, write_deltalake

    from flows.tables import OPERATION

    record = json.dumps(dict(request), sort_keys=True, separators=(",", ":"))
    for step in steps:
        if not step.rows:
            continue
        target = targets[step.target]
        table = _open(target)
        metadata = {**_carried_metadata(table), OPERATION: "erase", ERASURE: record}
        batches = [b.filter(pc.invert(_hits(b, step))) for b in table.to_pyarrow_dataset().to_batches(batch_size=BATCH_ROWS)]
        kept = pa.Table.from_batches(batches, schema=_schema(table))
        opts = dict(target.storage_options) if target.storage_options else None
        write_deltalake(target.uri, kept, mode="overwrite", partition_by=table.metadata().partition_columns or None,
                        storage_options=opts, commit_properties=CommitProperties(custom_metadata=metadata))
        table = _open(target)
        hours = 0 if vacuum_now else int(target.retention_hours if target.retention_hours is not None else 168)
        step.removed_files = len(table.vacuum(retention_hours=hours, enforce_retention_duration=False, dry_run=False))
        if vacuum_now:
            _expire_log(table, metadata)
        step.erased_version = _open(target).version()
    return steps


def _expire_log(table: Any, metadata: Mapping[str, str]) -> None:
    """Drop the log entries before a fresh checkpoint: they list the removed files and their min/max
    statistics, which can hold the subject's value. A last commit carries the build's state again."""
    from deltalake import CommitProperties

    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
    table.create_checkpoint()
    table.cleanup_metadata()
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 30 days"},
                                     commit_properties=CommitProperties(custom_metadata=dict(metadata)))


def request_record(column: str, value: str, salt: bytes, salt_source: str) -> dict[str, Any]:
    return {"request_id": secrets.token_hex(8), "column": column, "subject_sha256": subject_digest(column, value, salt),
            "salt": salt_source, "requested_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
