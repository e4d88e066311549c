"""Delta Lake tables: where a table lives and the commit-metadata keys that make the log our state.

Kept import-light (no deltalake, duckdb or pyarrow) because `observe` and other kinds (models read
`gold_*` tables) need these names during `plan`.
"""

from __future__ import annotations

QUARANTINE_SUFFIX = "__quarantine"

# Keys of Delta commitInfo custom metadata written on every specd commit.
FINGERPRINT = "specd.fingerprint"
GIT_SHA = "specd.git_sha"
TABLE = "specd.table"
ROLE = "specd.role"  # "table" or "quarantine"
OPERATION = "specd.operation"  # build, restore, compact, vacuum
PRUNE = "specd.prune"  # "true"/"false"/"" (environment decides): recorded so removed specs can be judged
INPUT_DIGEST = "specd.input_digest"  # digest of external inputs (files outside git, packaged data)
DATA_ID = "specd.data_id"  # identity of the table's contents; downstream tables record what they read
UPSTREAM = "specd.upstream"  # JSON {table: data_id} of the inputs this build read
WATERMARK = "specd.watermark"  # incremental tables: highest cursor value committed
APP_ID_PREFIX = "specd:"
ROWS_PREFIX = "specd.rows_"  # rows_read, rows_written, rows_quarantined, rows_deduplicated, rows_filtered
QUALITY = "specd.quality"  # JSON {"status": "passed|warned|failed", "failures": {check: count}}
ROW_COUNTERS = ("read", "written", "quarantined", "deduplicated", "filtered")


def table_uri(storage_root: str, name: str) -> str:
    """The Delta table location of table `name` under a storage root (local path or object-store URI)."""
    return f"{storage_root.rstrip('/')}/{name}"


def quarantine_name(name: str) -> str:
    return name + QUARANTINE_SUFFIX


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri.removeprefix("file://")
