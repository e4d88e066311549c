"""The incremental cursor: filter a source stream past the watermark, count it, and track its new maximum.

The watermark lives in the Delta log (commit metadata of the last build), so it advances atomically with
the rows it covers. It is stored as JSON `{"type": <arrow type>, "value": <json>}` so the comparison
happens in the column's own type (timestamps as timestamps, not as strings).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


def decode_watermark(text: str | None) -> Any:
    if not text:
        return None
    data = json.loads(text)
    value, type_name = data["value"], data["type"]
    if type_name.startswith("timestamp") or type_name.startswith("date"):
        import pyarrow as pa

        return pa.scalar(value).cast(_arrow_type(type_name)).as_py()
    return value


def _arrow_type(name: str) -> pa.DataType:
    import pyarrow as pa

    if name.startswith("timestamp["):
        unit = name[len("timestamp["):].split(",")[0].rstrip("]")
        tz = name.split("tz=")[1].rstrip("]") if "tz=" in name else None
        return pa.timestamp(unit, tz=tz)
    return pa.type_for_alias(name)


class Watcher:
    """Wraps the source stream: drops rows at or below the watermark, counts the rest, tracks max(cursor).

    It is also where the source's own exception is kept: DuckDB consumes this stream and reports any
    failure inside it as its own `InvalidInputException`, which would turn an API's transient 503 on a
    later page into a permanent query error. `error` holds the original so the build can re-raise it.

    A source that returned nothing at all may not even know its columns (an HTTP API with no records):
    `columnless` is then True and the build treats it as "no rows", not as a missing cursor column.
    """

    def __init__(self, reader: pa.RecordBatchReader, cursor: str | None, watermark: Any):
        self.source = reader
        self.cursor = cursor
        self.watermark = watermark
        self.rows = 0
        self.max_value: Any = None
        self.cursor_type: pa.DataType | None = None
        self.error: BaseException | None = None
        self.columnless = len(reader.schema) == 0
        self._peeked: list[pa.RecordBatch] | None = None
        self._stream: Iterator[pa.RecordBatch] = iter(())
        if cursor and not self.columnless and cursor not in reader.schema.names:
            from flows.tables.sources import SourceError

            raise SourceError(f"incremental cursor {cursor!r} is not a source column ({', '.join(reader.schema.names)})")
        if cursor and not self.columnless:
            self.cursor_type = reader.schema.field(cursor).type

    def reader(self) -> pa.RecordBatchReader:
        import pyarrow as pa

        if self._peeked is not None:
            return pa.RecordBatchReader.from_batches(self.source.schema, self._replay())
        return pa.RecordBatchReader.from_batches(self.source.schema, self._batches())

    def _replay(self) -> Iterator[pa.RecordBatch]:
        yield from self._peeked or ()
        yield from self._stream

    def has_new_rows(self) -> bool:
        """Pull the stream up to its first row past the watermark (kept for `reader`). False when there is
        none: the build then commits nothing and keeps the table's schema — an empty batch's column types
        (a SQL query with no rows types every column as string) must never be planned against it."""
        if self._peeked is None:
            self._peeked = []
            self._stream = self._batches()
            for batch in self._stream:
                self._peeked.append(batch)
                if batch.num_rows:
                    break
        return self.rows > 0

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._filtered()
        except Exception as exc:  # kept for the build: DuckDB would re-raise it as its own error
            self.error = exc
            raise

    def _filtered(self) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        import pyarrow.compute as pc

        bound = None
        if self.cursor and self.watermark is not None and self.cursor_type is not None:
            bound = pa.scalar(self.watermark).cast(self.cursor_type)
        for batch in self.source:
            if self.cursor:
                column = batch.column(self.cursor)
                if bound is not None:
                    batch = batch.filter(pc.fill_null(pc.greater(column, bound), False))
                    column = batch.column(self.cursor)
                if batch.num_rows:
                    top = pc.max(column).as_py()
                    if top is not None and (self.max_value is None or top > self.max_value):
                        self.max_value = top
            self.rows += batch.num_rows
            yield batch

    def watermark_json(self) -> str | None:
        value = self.max_value if self.max_value is not None else self.watermark
        if not self.cursor or value is None or self.cursor_type is None:
            return None
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        return json.dumps({"type": str(self.cursor_type), "value": value})
