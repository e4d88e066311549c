"""Table specs: Delta Lake tables fed from files or other tables, written by full rebuild or merge."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from daemon.spec.base import Ref, RelativePath, ResourceName, SpecModel


class FileSource(SpecModel):
    type: Literal["file"]
    path: RelativePath  # a file or a glob, relative to the environment's data root
    format: Literal["csv", "parquet", "json", "ndjson"]
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)


class TableSource(SpecModel):
    """SQL over upstream tables; each input is visible in the query under its table name."""

    type: Literal["table"]
    inputs: list[ResourceName] = Field(min_length=1)
    sql: str | None = None  # default: SELECT * FROM the single input


Source = Annotated[FileSource | TableSource, Field(discriminator="type")]


class WriteSpec(SpecModel):
    mode: Literal["overwrite", "merge"] = "overwrite"
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


class TableSpec(SpecModel):
    description: str = ""
    layer: Literal["bronze", "silver", "gold", "other"] = "other"
    source: Source
    write: WriteSpec = WriteSpec()
    partition_by: list[str] = Field(default_factory=list)
    schema_: SchemaSpec = Field(default=SchemaSpec(), alias="schema")
    retention: RetentionSpec = RetentionSpec()
    prune: bool | None = None  # None: the environment's prune policy decides

    def references(self) -> list[Ref]:
        if isinstance(self.source, TableSource):
            return [Ref("table", name, ("source", "inputs", i)) for i, name in enumerate(self.source.inputs)]
        return []
