"""Helpers for the table fault tests: a scripted JSON API on 127.0.0.1 and callable sources.

The callables are `_target_`s of test specs: the tests allow this module through the environment
overlay's `tables.callable_modules`, which is itself one of the things they test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest

from tests.conftest import http_server

MODULE = __name__


class ScriptedApi:
    """`GET /items?page=N&limit=K[&since=ID]`: records by page; `fail_pages` answers a page with a status."""

    def __init__(self) -> None:
        self.records: list[dict] = [{"id": i, "name": f"item-{i}", "price": i * 1.5} for i in range(1, 13)]
        self.fail_pages: dict[int, int] = {}
        self.port = 0

    def url(self, path: str = "/items") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(api: ScriptedApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            page, size = int(query.get("page", 1)), int(query.get("limit", 100))
            status = api.fail_pages.get(page, 200)
            records = [r for r in api.records if "since" not in query or r["id"] > int(query["since"])]
            body = json.dumps({"error": "scripted"} if status != 200 else records[(page - 1) * size : page * size]).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def api() -> Iterator[ScriptedApi]:
    state = ScriptedApi()
    with http_server(_handler(state)) as port:
        state.port = port
        yield state


def one_shot_events(rows: int, hours_old: float) -> Iterator[pa.RecordBatch]:
    """A generator of batches: the stream can be read once only (like an API or a queue)."""
    start = datetime(2020, 1, 1) if hours_old > 1e5 else datetime.now() - timedelta(hours=hours_old)
    for offset in range(0, rows, 3):
        ids = list(range(offset, min(rows, offset + 3)))
        yield pa.record_batch({
            "id": pa.array(ids, pa.int64()),
            "amount": pa.array([-5.0 if i in (1, 4) else float(i) for i in ids]),
            "label": pa.array([None if i == 2 else "x" for i in ids], pa.string()),
            "ts": pa.array([start + timedelta(seconds=i) for i in ids], pa.timestamp("us")),
        })


def stream_then_fail(rows: int, transient: bool) -> Iterator[pa.RecordBatch]:
    """One batch, then the source fails mid-stream (a dropped connection or a bad record)."""
    yield pa.record_batch({"id": pa.array(range(rows), pa.int64())})
    if transient:
        raise ConnectionResetError("connection reset by peer while reading page 2")
    raise ValueError("record 7 has no id")
