"""Table specs: Delta Lake tables fed from files, packaged data, other tables, callables or a generator.

A table spec says *what* the table is (source, write mode, partitioning, schema policy, retention,
refresh schedule), never *how* to build it: `flows/tables/build.py` turns it into one streaming
pipeline. Everything here is plain validated data so that `validate` and `plan` stay fast and light;
the only non-pydantic import (croniter) happens inside the cron validator.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_serializer, model_validator

from daemon.schema.base import Ref, RelativePath, ResourceName, SpecModel
from daemon.schema.table_sources import HttpSource, SqlSource
from daemon.schema.table_transforms import CleanSpec, FeaturesSpec, PrivacySpec, QualitySpec

FileFormat = Literal["csv", "parquet", "json", "ndjson"]
ReaderOption = str | int | float | bool
_TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*[.:][A-Za-z_][A-Za-z0-9_]*$")
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class FileSource(SpecModel):
    """A file or glob under the environment's data root (or an object-store URI)."""

    type: Literal["file"]
    path: RelativePath
    format: FileFormat
    options: dict[str, ReaderOption] = Field(default_factory=dict)  # reader options (DuckDB names: delim, nullstr, ...)
    row_id: str | None = None  # add an int64 column numbering rows in read order (stable for fixed input)
    # new_files: a landing folder — each build reads only the files not ingested yet (recorded in the commit)
    ingest: Literal["all", "new_files"] = "all"


class PackageSource(SpecModel):
    """A data file shipped inside an installed Python package (read through importlib.resources)."""

    type: Literal["package"]
    package: str
    path: RelativePath  # inside the package; cannot escape it
    format: FileFormat
    options: dict[str, ReaderOption] = Field(default_factory=dict)
    row_id: str | None = None

    @model_validator(mode="after")
    def _package_name(self) -> PackageSource:
        if not _PACKAGE.match(self.package):
            raise ValueError(f"package {self.package!r} is not a Python package name")
        if "://" in self.path:
            raise ValueError("package paths are relative to the package, not URIs")
        return self


class TableSource(SpecModel):
    """SQL over upstream tables; each input is visible in the query under its table name."""

    type: Literal["table"]
    inputs: list[ResourceName] = Field(min_length=1)
    sql: str | None = None  # default: SELECT * FROM the single input
    # The query may compute columns from ones this table declares under `privacy.columns` (otherwise a
    # validation error: such a column would be written in plaintext unless declared there too).
    allow_pii_derivation: bool = False

    @model_validator(mode="after")
    def _sql_for_many(self) -> TableSource:
        if self.sql is None and len(self.inputs) > 1:
            raise ValueError("several inputs need a sql query that combines them")
        return self


class CallableSource(SpecModel):
    """A Python function returning Arrow or Polars data; `_target_` must be on the allowlist at apply time."""

    type: Literal["callable"]
    target: str = Field(alias="_target_")
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _target_shape(self) -> CallableSource:
        if not _TARGET.match(self.target):
            raise ValueError(f"_target_ {self.target!r} must be 'package.module.function' or 'package.module:function'")
        return self


class SyntheticColumn(SpecModel):
    """One generated column. Values depend only on (seed, row index), so a fixed spec gives fixed data."""

    name: str
    kind: Literal["sequence", "int", "float", "normal", "choice", "bool", "timestamp", "string"]
    low: float = 0
    high: float = 100
    mean: float = 0
    std: float = 1
    values: list[str | int | float] = Field(default_factory=list)  # choice
    start: str = "2024-01-01T00:00:00"  # timestamp: start, one step_s per row
    step_s: float = 1
    prefix: str = ""  # string: prefix + random id
    null_fraction: float = Field(default=0, ge=0, le=1)

    @model_validator(mode="after")
    def _choice_values(self) -> SyntheticColumn:
        if self.kind == "choice" and not self.values:
            raise ValueError("a 'choice' column needs values")
        if self.kind in ("int", "float") and self.high < self.low:
            raise ValueError("high must not be below low")
        return self


class SyntheticSource(SpecModel):
    """A seeded generator for large inputs (benchmarks, load tests)."""

    type: Literal["synthetic"]
    rows: int = Field(ge=0)
    seed: int = 0
    batch_rows: int = Field(default=262_144, ge=1)
    columns: list[SyntheticColumn] = Field(min_length=1)


Source = Annotated[
    FileSource | PackageSource | TableSource | CallableSource | SyntheticSource | SqlSource | HttpSource,
    Field(discriminator="type"),
]


class WriteSpec(SpecModel):
    mode: Literal["overwrite", "merge", "append"] = "overwrite"
    keys: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _keys_for_merge(self) -> WriteSpec:
        if self.mode == "merge" and not self.keys:
            raise ValueError("write.mode 'merge' needs write.keys")
        return self


class ColumnSpec(SpecModel):
    name: str
    type: str  # Arrow type name: int64, float64, string, bool, date32, timestamp[us], ...
    nullable: bool = True


class SchemaSpec(SpecModel):
    policy: Literal["enforce", "evolve"] = "enforce"
    columns: list[ColumnSpec] = Field(default_factory=list)


class RetentionSpec(SpecModel):
    vacuum_hours: int = Field(default=168, ge=0)


def _check_cron(expression: str) -> str:
    from croniter import croniter  # light, and only needed when a schedule is declared

    if not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a valid cron expression (five fields: minute hour day month weekday)")
    return expression


class MaintenanceSpec(SpecModel):
    """Compaction and vacuum, run as scheduled work (vacuum keeps `retention.vacuum_hours`)."""

    schedule: str | None = None  # cron; None: maintenance runs only when asked
    compact: bool = True
    target_file_mb: int = Field(default=128, ge=1)
    vacuum: bool = True

    @model_validator(mode="after")
    def _cron(self) -> MaintenanceSpec:
        if self.schedule is not None:
            _check_cron(self.schedule)
        return self


class IncrementalSpec(SpecModel):
    """Append or merge only rows whose cursor is past the watermark kept in the Delta log."""

    cursor: str


class OnlineSpec(SpecModel):
    """Serve the latest row per key from the environment's online store (Redis), materialised from Delta.

    Becomes the derived resource `online/<table>` (flows/online/derive.py): planned, idempotent, revertable.
    """

    keys: list[str] = Field(min_length=1)  # entity key columns (one Redis hash per distinct key)
    features: list[str] = Field(default_factory=list)  # empty: every column but the keys (and the timestamp)
    timestamp: str | None = None  # event-time column: the latest row per key by it; None: the last row read
    ttl_s: int | None = Field(default=None, ge=1)  # keys expire this long after the last materialisation
    store: Literal["default"] = "default"  # the environment's `online_store`

    @model_validator(mode="after")
    def _distinct(self) -> OnlineSpec:
        for label, names in (("keys", self.keys), ("features", self.features)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"online.{label} repeats {', '.join(repeated)}")
        both = sorted(set(self.keys) & set(self.features))
        if both:
            raise ValueError(f"online.features must not include the keys ({', '.join(both)})")
        return self


class TableSpec(SpecModel):
    description: str = ""  # metadata (with owners, tags): set on the Delta table, never a rebuild
    owners: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    layer: Literal["bronze", "silver", "gold", "other"] = "other"
    source: Source
    clean: CleanSpec | None = None
    features: FeaturesSpec | None = None
    quality: QualitySpec | None = None
    privacy: PrivacySpec | None = None
    write: WriteSpec = Field(default_factory=WriteSpec)
    incremental: IncrementalSpec | None = None
    partition_by: list[str] = Field(default_factory=list)
    schema_: SchemaSpec = Field(default_factory=SchemaSpec, alias="schema")
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    maintenance: MaintenanceSpec = Field(default_factory=MaintenanceSpec)
    schedule: str | None = None  # cron: refresh as a Prefect deployment
    prune: bool | None = None  # None: the environment's prune policy decides
    online: OnlineSpec | None = None  # also serve the latest row per key from the online store
    # How the table is built: one DuckDB stream (default), or per input partition on a Dask cluster
    # (the environment's tables.dask); declared last so its validator sees every other field.
    engine: Literal["duckdb", "dask"] = "duckdb"

    @field_validator("engine")
    @classmethod
    def _engine_features(cls, engine: str, info: ValidationInfo) -> str:
        """`engine: dask` with a feature the Dask engine does not run: an error on the `engine:` line."""
        if engine == "dask":
            from daemon.schema.table_engine import dask_unsupported

            unsupported = dask_unsupported(info.data)
            if unsupported:
                raise ValueError(f"engine 'dask' does not support {'; '.join(unsupported)} (use engine: duckdb for this table)")
        return engine

    @model_serializer(mode="wrap")
    def _default_engine_unrecorded(self, handler: Any) -> Any:
        """The default engine is left out of the normalised spec, so tables that do not set one keep
        the fingerprints they had before the switch existed."""
        data = handler(self)
        if isinstance(data, dict) and data.get("engine") == "duckdb":
            data.pop("engine")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TableSpec:
        source_cursor = getattr(self.source, "cursor", None)
        if self.incremental and source_cursor and source_cursor != self.incremental.cursor:
            raise ValueError(f"incremental.cursor {self.incremental.cursor!r} differs from source.cursor {source_cursor!r}")
        if self.incremental is not None and self.write.mode == "overwrite":
            raise ValueError("incremental tables need write.mode 'append' or 'merge' (an overwrite would keep only the new rows)")
        new_files = getattr(self.source, "ingest", "all") == "new_files"
        if self.write.mode == "append" and self.cursor is None and not new_files:
            raise ValueError("write.mode 'append' needs incremental.cursor or source.ingest 'new_files' (a rebuild would append every row again)")
        if new_files and self.write.mode == "overwrite":
            raise ValueError("source.ingest 'new_files' needs write.mode 'append' or 'merge' (an overwrite would keep only the new files)")
        if self.schedule is not None:
            _check_cron(self.schedule)
        if self.write.mode == "merge" and set(self.partition_by) - set(self.write.keys):
            raise ValueError("partition_by columns of a merge table must be among write.keys")
        return self

    @field_validator("online")
    @classmethod
    def _online_columns(cls, online: OnlineSpec | None, info: ValidationInfo) -> OnlineSpec | None:
        """Keys and features against the columns the spec alone tells (error on the `online:` line)."""
        schema, features = info.data.get("schema_"), info.data.get("features")
        if online is None or schema is None:
            return online
        columns = _known_columns(schema, features)
        if columns is None:
            return online  # known only once built: the online adapter checks against the Delta schema at apply
        for label, names in (("keys", online.keys), ("features", online.features), ("timestamp", [online.timestamp] if online.timestamp else [])):
            unknown = [n for n in names if n not in columns]
            if unknown:
                raise ValueError(f"online.{label}: unknown column {', '.join(map(repr, unknown))}; the table has {columns}")
        return online

    def known_columns(self) -> list[str] | None:
        return _known_columns(self.schema_, self.features)

    @property
    def cursor(self) -> str | None:
        """The incremental cursor column, declared on the table or on its (sql/http) source."""
        return self.incremental.cursor if self.incremental else getattr(self.source, "cursor", None)

    def references(self) -> list[Ref]:
        refs: list[Ref] = []
        if isinstance(self.source, TableSource):
            refs += [Ref("table", name, ("source", "inputs", i)) for i, name in enumerate(self.source.inputs)]
        if self.features is not None:
            refs += self.features.references()
        return refs

    def upstream_tables(self) -> list[str]:
        return sorted({ref.name for ref in self.references() if ref.kind == "table"})


def _known_columns(schema: SchemaSpec, features: FeaturesSpec | None) -> list[str] | None:
    """The table's columns when the spec alone tells them (an enforced schema, or a feature select)."""
    if schema.columns and schema.policy == "enforce":
        return [c.name for c in schema.columns]
    if features is not None and features.select:
        return list(features.select)
    return None
