"""Source readers, registered by source `type`: each turns a source spec into a stream of Arrow batches.

A reader module exposes `read(spec, ctx: SourceContext) -> pyarrow.RecordBatchReader` and, optionally,
`input_digest(spec, ctx) -> str | None` (cheap: no data read) for inputs that live outside Git, so
`observe` can tell a table is stale when its files change. Readers stream: memory is bounded by the
batch size, never by the input size. Registering a new type is one line in `READERS`.

This module stays import-light (observe uses `input_digest`); readers import pyarrow/duckdb inside `read`.

`SourceError` is a `daemon.shared.errors.ApplyError`, so whether a failure is transient (an API that answered
503 on page 7, an unreachable database) travels with it to the daemon, which retries those with backoff.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.shared.errors import ApplyError

if TYPE_CHECKING:
    import pyarrow as pa

# source type -> module with read(spec, ctx) [and input_digest(spec, ctx)]
READERS: dict[str, str] = {
    "file": "flows.tables.sources.files",
    "package": "flows.tables.sources.package",
    "table": "flows.tables.sources.tables",
    "callable": "flows.tables.sources.callable",
    "synthetic": "flows.tables.sources.synthetic",
    "sql": "flows.tables.sources.sql_db",
    "http": "flows.tables.sources.http_api",
}

DEFAULT_ALLOWED_MODULES = ("flows.tables.sources.",)


class SourceError(ApplyError):
    """A source could not be read. The message names the table and the offending path/field;
    `transient` (retry later) or not (fix the spec or the data) is decided where the fault is seen."""


def _no_secrets(ref: str) -> str:
    raise SourceError(f"no secret resolver available for {ref}")


@dataclass(frozen=True)
class SourceContext:
    table: str  # the table being built (for messages)
    data_root: Path  # file sources resolve under this
    repo_dir: Path  # the checkout being applied
    upstream: Mapping[str, str] = field(default_factory=dict)  # upstream table name -> Delta URI
    storage_options: Mapping[str, str] = field(default_factory=dict)  # resolved object-store options
    cursor: str | None = None  # incremental cursor column
    watermark: Any = None  # highest cursor value already committed (None: first run)
    resolve_secret: Callable[[str], str] = _no_secrets  # "secret:NAME" -> value (apply time only)
    allowed_modules: tuple[str, ...] = DEFAULT_ALLOWED_MODULES  # `_target_` allowlist (prefixes)
    batch_rows: int = 131_072
    lineage: dict[str, Any] = field(default_factory=dict)  # readers record what they read (upstream versions)
    tls: Mapping[str, Any] = field(default_factory=dict)  # env tls settings (refs kept): CA and required for SQL/HTTP


def reader_module(source_type: str) -> Any:
    try:
        module_path = READERS[source_type]
    except KeyError:
        raise SourceError(f"no reader registered for source type {source_type!r}") from None
    return importlib.import_module(module_path)


def read_source(spec: Any, ctx: SourceContext) -> pa.RecordBatchReader:
    """Open the stream of one source spec."""
    return reader_module(spec.type).read(spec, ctx)


def input_digest(spec: Any, ctx: SourceContext) -> str | None:
    """Digest of inputs outside Git (None when the source has none or cannot tell cheaply)."""
    module = reader_module(spec.type)
    digest = getattr(module, "input_digest", None)
    return digest(spec, ctx) if digest else None
