"""Prediction and feedback logging to Delta tables through a bounded queue that never blocks serving.

Serving calls `record()`, one `deque.append` (no lock, no condition variable: the deque is safe between
the event loop and the writer thread): when the buffer already holds `queue_size` records it is
dropped and counted (`specd_service_prediction_log_dropped_total`) — a slow disk must never slow or fail
a request. A daemon thread drains the queue every `flush_interval_s` and appends one Delta commit per
flush; several workers append to the same table, so a commit conflict is retried.

Records still queued when a worker is killed with SIGKILL are lost (at most one flush interval): that is
the price of never blocking; a graceful stop flushes them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("specd.prediction_log")

PREDICTION_COLUMNS: dict[str, str] = {
    "request_id": "string", "row": "int64", "ts": "timestamp", "service": "string", "variant": "string",
    "model_tag": "string", "routing_fingerprint": "string", "sticky_key": "string", "prediction": "string",
    "probability": "float64", "latency_ms": "float64", "features": "string",
}
FEEDBACK_COLUMNS: dict[str, str] = {
    "request_id": "string", "row": "int64", "ts": "timestamp", "service": "string", "variant": "string",
    "label": "string",
}


def arrow_schema(columns: Mapping[str, str]) -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema([pa.field(name, types[kind]) for name, kind in columns.items()])


def warm_up() -> None:
    """Convert one record at start-up: pyarrow's first conversion of timezone-aware timestamps costs
    ~0.25 s of CPU with the GIL held, which the first flush would otherwise take out of serving."""
    from datetime import UTC, datetime

    import pyarrow as pa

    pa.Table.from_pylist([{"ts": datetime.now(UTC), "row": 0, "probability": 0.5, "request_id": ""}],
                         schema=arrow_schema({"ts": "timestamp", "row": "int64", "probability": "float64", "request_id": "string"}))


class DeltaLog:
    """One table, one bounded queue, one writer thread."""

    def __init__(
        self,
        uri: str,
        columns: Mapping[str, str],
        *,
        queue_size: int,
        flush_interval_s: float,
        storage_options: Mapping[str, str] | None = None,
        on_drop: Callable[[int], None] = lambda n: None,
    ):
        self.uri = uri
        self.columns = dict(columns)
        self.flush_interval_s = flush_interval_s
        self.storage_options = dict(storage_options or {}) or None
        self.queue_size = queue_size
        self._buffer: deque[dict[str, Any]] = deque()
        self._on_drop = on_drop
        self.dropped = 0
        self.written = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"delta-log:{uri}", daemon=True)
        self._thread.start()

    def record(self, row: dict[str, Any]) -> bool:
        if len(self._buffer) >= self.queue_size:
            self.dropped += 1
            self._on_drop(1)
            return False
        self._buffer.append(row)
        return True

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.flush_interval_s)
            self.flush()
        self.flush()

    def flush(self) -> int:
        rows: list[dict[str, Any]] = []
        take = self._buffer.popleft
        try:
            for _ in range(len(self._buffer)):  # what is there now; later records wait for the next flush
                rows.append(take())
        except IndexError:  # another flush (close() racing the writer thread) took the rest
            pass
        if not rows:
            return 0
        try:
            self._append(rows)
            self.written += len(rows)
            self.last_error = None
        except Exception as exc:  # keep serving; the dashboard shows the drop count
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.dropped += len(rows)
            self._on_drop(len(rows))
            log.warning("could not append %d records to %s: %s", len(rows), self.uri, self.last_error)
        return len(rows)

    def _append(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError

        table = pa.Table.from_pylist(rows, schema=arrow_schema(self.columns))
        for attempt in range(8):
            try:
                write_deltalake(self.uri, table, mode="append", storage_options=self.storage_options)
                return
            except CommitFailedError:
                if attempt == 7:
                    raise
                time.sleep(0.05 * (attempt + 1))
