"""SQL database source: one SELECT through SQLAlchemy, streamed in chunks as Arrow record batches.

The URL is a secret (`${secret:NAME}`, resolved only here, at apply time) or an embedded SQLite file
under the data root. Rows are fetched with a server-side cursor (`stream_results`) `chunk_rows` at a
time, so memory is bounded by the chunk, not the table. For incremental tables the query is wrapped:
`SELECT * FROM (<query>) WHERE <cursor> > :watermark ORDER BY <cursor>`, so a build emits only new
rows, in cursor order (a crash mid-stream then loses nothing: the watermark only moves on commit).

Errors name the table. Connection failures are transient (the daemon retries); a bad query is not.
Credentials never appear in messages.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from daemon.schema.table_sources import SQLITE_PREFIX, SqlSource
from flows.tables.sources import SourceContext, SourceError

# PostgreSQL type OIDs -> Arrow (other databases: inferred from the first chunk)
_PG_OIDS = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    1700: pa.float64(),
    25: pa.string(),
    1042: pa.string(),
    1043: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    2950: pa.string(),
    114: pa.string(),
    3802: pa.string(),
    17: pa.binary(),
}


def _url(spec: SqlSource, ctx: SourceContext) -> tuple[str, str]:
    """(SQLAlchemy URL, a description safe for messages)."""
    if spec.url.startswith(SQLITE_PREFIX):
        relative = spec.url[len(SQLITE_PREFIX) :]
        path = Path(ctx.data_root) / relative
        if not path.is_file():  # SQLAlchemy would silently create an empty database
            raise SourceError(
                f"table {ctx.table}: source.url: SQLite database {relative} not found under the data root"
            )
        if not path.resolve().is_relative_to(Path(ctx.data_root).resolve()):  # a symlink out of the data root
            raise SourceError(f"table {ctx.table}: source.url: SQLite database {relative} resolves outside the data root")
        return SQLITE_PREFIX + str(path.resolve()), f"sqlite database {relative}"
    name = spec.url.removeprefix("secret:")
    try:
        url = ctx.resolve_secret(spec.url)
    except Exception as exc:  # SecretNotFound and friends: name the secret, never a value
        raise SourceError(f"table {ctx.table}: source.url: {exc}") from None
    return url, f"the database in secret {name}"


def _sanitise(message: str, url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:
        password = None
    first_line = message.strip().splitlines()[0] if message.strip() else message
    return first_line.replace(str(password), "***") if password else first_line


def _tls_args(url: str, ctx: SourceContext | None) -> dict[str, Any]:
    """libpq TLS options from the environment's `tls`: `sslmode=verify-full` + `sslrootcert=<tls.ca>` unless
    the URL sets its own sslmode; `tls.required` refuses anything that does not verify the server."""
    from sqlalchemy.engine import make_url

    from daemon.shared import tls

    settings = dict(ctx.tls or {}) if ctx is not None else {}
    if url.startswith("sqlite"):
        return {}
    if not url.startswith("postgresql"):
        if settings.get("required"):
            raise SourceError(f"table {ctx.table}: source.url: tls.required supports PostgreSQL (sslmode=verify-full) and SQLite only")
        return {}
    query = make_url(url).query
    files = tls.resolve(settings, resolve=ctx.resolve_secret) if settings.get("ca") else None
    args: dict[str, Any] = {}
    if "sslmode" not in query:
        args = tls.libpq_options(files)
    elif files is not None and files.ca and "sslrootcert" not in query:
        args["sslrootcert"] = files.ca
    mode = args.get("sslmode", query.get("sslmode"))
    if settings.get("required") and mode not in ("verify-full", "verify-ca"):
        raise SourceError(f"table {ctx.table}: source.url: tls.required needs sslmode=verify-full (or verify-ca), not {mode or 'none'}")
    return args


def _engine(url: str, spec: SqlSource, ctx: SourceContext | None = None):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["connect_timeout"] = max(1, int(spec.connect_timeout_s))
        connect_args.update(_tls_args(url, ctx))
    elif url.startswith("sqlite"):
        connect_args["timeout"] = spec.connect_timeout_s
    elif url.startswith("mysql"):
        connect_args["connect_timeout"] = max(1, int(spec.connect_timeout_s))
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def _watermark(value: Any) -> Any:
    """Watermarks come back from the Delta log as text; an ISO timestamp binds as a datetime."""
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _wrapped_query(spec: SqlSource, ctx: SourceContext, quote) -> tuple[str, dict[str, Any]]:
    if not ctx.cursor:
        return spec.query, {}
    cursor = quote(ctx.cursor)
    where = f" WHERE _specd_q.{cursor} > :_specd_watermark" if ctx.watermark is not None else ""
    query = f"SELECT * FROM ({spec.query}) AS _specd_q{where} ORDER BY _specd_q.{cursor}"
    return query, ({"_specd_watermark": _watermark(ctx.watermark)} if ctx.watermark is not None else {})


def _arrow_type(values: list, oid: Any) -> pa.DataType:
    """The column's type: from the PostgreSQL type when known, else inferred from the first chunk."""
    if isinstance(oid, int) and oid in _PG_OIDS:
        return _PG_OIDS[oid]
    sample = [v for v in values if v is not None]
    if not sample:
        return pa.string()
    if all(isinstance(v, decimal.Decimal) for v in sample):
        return pa.float64()  # NUMERIC scales vary row to row; cast in `clean` for exact decimals
    inferred = pa.array(sample).type
    if pa.types.is_timestamp(inferred) and inferred.tz is not None:
        return pa.timestamp("us", tz="UTC")
    return inferred


def _column(values: list, kind: pa.DataType, name: str, table: str) -> pa.Array:
    if pa.types.is_floating(kind):
        values = [float(v) if isinstance(v, decimal.Decimal) else v for v in values]
    try:
        return pa.array(values, kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise SourceError(f"table {table}: column {name!r} changed type between chunks ({kind}): {exc}") from None


def read(spec: SqlSource, ctx: SourceContext) -> pa.RecordBatchReader:
    """Open the query and return a reader over its rows, `chunk_rows` per batch."""
    from sqlalchemy import exc as sa_exc
    from sqlalchemy import text

    url, where = _url(spec, ctx)
    if not url.startswith(("sqlite", "postgresql")):
        _tls_args(url, ctx)  # tls.required: refuses other network databases
    engine = _engine(url, spec, ctx)
    query, params = _wrapped_query(spec, ctx, engine.dialect.identifier_preparer.quote)
    try:
        connection = engine.connect()
    except (sa_exc.OperationalError, sa_exc.InterfaceError, OSError) as exc:
        engine.dispose()
        reason = _sanitise(str(getattr(exc, "orig", exc)), url)
        raise SourceError(f"table {ctx.table}: cannot connect to {where}: {reason}", transient=True) from None
    try:
        result = connection.execution_options(stream_results=True, max_row_buffer=spec.chunk_rows).execute(
            text(query), params
        )
        names = list(result.keys())
        oids = [
            getattr(d, "type_code", None) if not isinstance(d, tuple) else d[1]
            for d in (result.cursor.description or [])
        ]
        first = result.fetchmany(spec.chunk_rows)
    except sa_exc.DBAPIError as exc:
        connection.close()
        engine.dispose()
        transient = isinstance(exc, sa_exc.OperationalError) and exc.connection_invalidated
        reason = _sanitise(str(getattr(exc, "orig", exc)), url)
        if ctx.cursor and ctx.cursor in reason:
            reason += f" (incremental.cursor {ctx.cursor!r} must be a column of source.query)"
        raise SourceError(f"table {ctx.table}: query on {where} failed: {reason}", transient=transient) from None
    if len(set(names)) != len(names):
        connection.close()
        engine.dispose()
        raise SourceError(f"table {ctx.table}: source.query returns duplicate column names: {names}")
    if ctx.cursor and ctx.cursor not in names:
        connection.close()
        engine.dispose()
        raise SourceError(f"table {ctx.table}: incremental.cursor {ctx.cursor!r} is not a column of source.query")

    columns = list(zip(*first, strict=True)) if first else [[] for _ in names]
    oids = oids if len(oids) == len(names) else [None] * len(names)
    schema = pa.schema([pa.field(n, _arrow_type(list(c), o)) for n, c, o in zip(names, columns, oids, strict=True)])

    def to_batch(rows) -> pa.RecordBatch:
        cols = list(zip(*rows, strict=True))
        arrays = [_column(list(c), f.type, f.name, ctx.table) for c, f in zip(cols, schema, strict=True)]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            if first:
                yield to_batch(first)
            while True:
                try:
                    rows = result.fetchmany(spec.chunk_rows)
                except sa_exc.DBAPIError as exc:
                    reason = _sanitise(str(getattr(exc, "orig", exc)), url)
                    raise SourceError(
                        f"table {ctx.table}: reading from {where} failed: {reason}", transient=True
                    ) from None
                if not rows:
                    return
                yield to_batch(rows)
        finally:
            connection.close()
            engine.dispose()

    return pa.RecordBatchReader.from_batches(schema, batches())
