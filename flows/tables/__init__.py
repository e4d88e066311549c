"""Delta Lake tables: where a table lives and the commit-metadata keys that make the log our state.

Kept import-light (no deltalake, duckdb or pyarrow) because `observe` and other kinds (models read
`gold_*` tables) need these names during `plan`.
"""

from __future__ import annotations

from daemon.shared.storage_uri import is_local, local_path  # noqa: F401  (re-exported: one place knows URIs)

QUARANTINE_SUFFIX = "__quarantine"

# Keys of Delta commitInfo custom metadata written on every specd commit.
FINGERPRINT = "specd.fingerprint"
GIT_SHA = "specd.git_sha"
TABLE = "specd.table"
ROLE = "specd.role"  # "table" or "quarantine"
OPERATION = "specd.operation"  # build, restore, compact, vacuum
PRUNE = "specd.prune"  # "true"/"false"/"" (environment decides): recorded so removed specs can be judged
INPUT_DIGEST = "specd.input_digest"  # digest of external inputs (files outside git, packaged data)
BUILD_KEY = "specd.build_key"  # fingerprint + input digest + upstream data ids (see build_key)
BATCH = "specd.batch"  # the app-transaction version committed with this build
DATA_ID = "specd.data_id"  # identity of the contents: the build key (overwrite) or key@batch
UPSTREAM = "specd.upstream"  # JSON {table: data_id} of the inputs this build read
WATERMARK = "specd.watermark"  # incremental tables: highest cursor value committed
APP_ID_PREFIX = "specd:"
ROWS_PREFIX = "specd.rows_"  # rows_read, rows_written, rows_quarantined, rows_deduplicated, rows_filtered
QUALITY = "specd.quality"  # JSON {"status": "passed|warned|failed", "failures": {check: count}}
# The `<table>__quarantine` state that goes with a table commit (restore brings both back together):
QUARANTINE_BATCH = "specd.quarantine_batch"  # build number its quarantine rows were committed under (-1: none)
QUARANTINE_VERSION = "specd.quarantine_version"  # that quarantine table version (-1: no quarantine table)
DATA_DIGEST = "specd.data_digest"  # content identity of the rows live after the commit (see data_digest)
INGESTED = "specd.files"  # `ingest: new_files` sources: JSON list of the landing files already ingested
META_DIGEST = "specd.meta_digest"  # digest of the spec's metadata fields (description, owners, ...) applied
SPEC = "specd.spec"  # the applied, normalised spec (JSON): `plan` diffs the desired spec against it
PRIVACY_KEYS = "specd.privacy_keys"  # JSON {column: "SECRET_NAME:key fingerprint"} of hashed/encrypted columns
PRIVACY_WARNINGS = "specd.privacy_warnings"  # JSON list of undeclared columns whose sampled values look personal
ROW_COUNTERS = ("read", "written", "quarantined", "deduplicated", "filtered")


TABLES_DIR = "tables"  # under the storage root; other kinds keep their own Delta tables beside it


def tables_root(storage_root: str) -> str:
    return f"{storage_root.rstrip('/')}/{TABLES_DIR}"


def table_uri(storage_root: str, name: str) -> str:
    """The Delta table location of table `name` under a storage root (local path or object-store URI)."""
    return f"{tables_root(storage_root)}/{name}"


def quarantine_name(name: str) -> str:
    return name + QUARANTINE_SUFFIX




def build_key(fingerprint: str, input_digest: str | None, upstream_ids: dict[str, str]) -> str:
    """Identity of one build's inputs: the spec fingerprint, external inputs and upstream contents.

    Overwrite tables are a pure function of it, so it doubles as their data identity (`DATA_ID`):
    downstream builds record the ids they read, and a restore brings back a version's id with it.
    """
    import hashlib
    import json

    material = json.dumps([fingerprint, input_digest, sorted(upstream_ids.items())], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:32]
