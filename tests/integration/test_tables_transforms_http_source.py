"""The HTTP API source against a real HTTP server on 127.0.0.1 (stdlib `http.server` in a thread):
every pagination style, 429 + Retry-After and 5xx retries, auth from a secret, incremental filtering,
and a transient error naming the table when retries run out."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from daemon.schema.table_sources import HttpSource
from flows.tables.sources import SourceContext, SourceError, read_source
from tests.conftest import http_server

pytestmark = pytest.mark.integration
TOKEN = "tok-123-secret"
RECORDS = [
    {"id": i, "name": f"item-{i}", "price": i * 1.5, "updated": f"2024-03-{i:02d}T00:00:00"} for i in range(1, 24)
]


class Api:
    """State shared with the handler: scripted failures and a log of requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, str | None]] = []
        self.failures: list[int] = []  # statuses to answer before serving normally (popped per request)
        self.lock = threading.Lock()
        self.port = 0

    def next_failure(self) -> int | None:
        with self.lock:
            return self.failures.pop(0) if self.failures else None


def make_handler(api: Api):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def send_json(self, body, status: int = 200, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            api.requests.append((parts.path, query, self.headers.get("Authorization")))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.send_json({"error": "unauthorised"}, 401)
                return
            failure = api.next_failure()
            if failure == 429:
                self.send_json({"error": "slow down"}, 429, {"Retry-After": "1"})
                return
            if failure:
                self.send_json({"error": "boom"}, failure)
                return
            records = RECORDS
            if "since" in query:
                records = [r for r in records if r["updated"] > query["since"]]
            size = int(query.get("limit", 100))
            if parts.path == "/page":
                page = int(query.get("page", 1))
                self.send_json({"data": {"items": records[(page - 1) * size : page * size]}})
            elif parts.path == "/offset":
                offset = int(query.get("offset", 0))
                self.send_json({"data": {"items": records[offset : offset + size]}})
            elif parts.path == "/cursor":
                start = int(query.get("cursor", 0))
                nxt = start + size if start + size < len(records) else None
                self.send_json({"results": records[start : start + size], "meta": {"next": nxt}})
            elif parts.path == "/link":
                start = int(query.get("start", 0))
                headers = {}
                if start + size < len(records):
                    headers["Link"] = f'</link?start={start + size}&limit={size}>; rel="next"'
                self.send_json(records[start : start + size], headers=headers)
            elif parts.path == "/bodylink":
                start = int(query.get("start", 0))
                nxt = f"/bodylink?start={start + size}&limit={size}" if start + size < len(records) else None
                self.send_json({"items": records[start : start + size], "links": {"next": nxt}})
            else:
                self.send_json({"error": "not found"}, 404)

    return Handler


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api()
    with http_server(make_handler(state)) as port:
        state.port = port
        yield state


def ctx(tmp_path: Path, **kwargs) -> SourceContext:
    secrets = {"secret:API_TOKEN": TOKEN}
    return SourceContext(
        table="bronze_items", data_root=tmp_path, repo_dir=tmp_path, resolve_secret=secrets.__getitem__, **kwargs
    )


def spec(api: Api, path: str, **kwargs) -> HttpSource:
    data = {
        "type": "http",
        "url": f"http://127.0.0.1:{api.port}{path}",
        "auth": {"value": "secret:API_TOKEN"},
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
        **kwargs,
    }
    return HttpSource.model_validate(data)


@pytest.mark.parametrize(
    ("path", "records", "pagination", "requests"),
    [
        ("/page", "data.items", {"style": "page", "page_size": 5}, 5),  # 5+5+5+5+3: the short page ends it
        ("/offset", "data.items", {"style": "offset", "page_size": 10}, 3),
        ("/cursor", "results", {"style": "cursor", "page_size": 7, "next_cursor_path": "meta.next"}, 4),
        ("/link", "", {"style": "link", "page_size": 6}, 4),
        ("/bodylink", "items", {"style": "link", "page_size": 9, "next_link_path": "links.next"}, 3),
    ],
)
def test_pagination_styles_read_every_record_once(api, tmp_path, path, records, pagination, requests) -> None:
    table = read_source(spec(api, path, records=records, pagination=pagination, batch_rows=8), ctx(tmp_path)).read_all()
    assert table.column("id").to_pylist() == list(range(1, 24))
    assert table.schema.names == ["id", "name", "price", "updated"]
    assert len(api.requests) == requests
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in api.requests)


def test_rate_limit_and_server_errors_are_retried(api, tmp_path) -> None:
    api.failures = [429, 500, 503]
    started = time.monotonic()
    source = spec(api, "/page", records="data.items", pagination={"style": "page", "page_size": 10}, max_backoff_s=0.3)
    table = read_source(source, ctx(tmp_path)).read_all()
    assert table.num_rows == 23
    assert len(api.requests) == 3 + 3  # three failures, then pages 1..3
    assert [q.get("page") for _, q, _ in api.requests[:4]] == ["1", "1", "1", "1"]  # retried the same page
    assert time.monotonic() - started >= 0.3  # Retry-After: 1 honoured up to max_backoff_s


def test_retries_run_out_transient_error_names_table(api, tmp_path) -> None:
    api.failures = [500] * 10
    with pytest.raises(SourceError) as info:
        read_source(spec(api, "/page", records="data.items", max_retries=2), ctx(tmp_path))
    assert info.value.transient
    message = str(info.value)
    assert (
        message.startswith("table bronze_items: GET http://127.0.0.1:")
        and "after 3 attempts (last: HTTP 500)" in message
    )
    assert TOKEN not in message


def test_failure_on_a_later_page_surfaces_while_streaming(api, tmp_path) -> None:
    reader = read_source(
        spec(
            api,
            "/page",
            records="data.items",
            max_retries=1,
            pagination={"style": "page", "page_size": 5},
            batch_rows=5,
        ),
        ctx(tmp_path),
    )
    api.failures = [502, 502]
    with pytest.raises(SourceError) as info:
        reader.read_all()
    assert info.value.transient and "bronze_items" in str(info.value)


def test_unreachable_api_and_client_errors(tmp_path, api) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    unreachable = HttpSource.model_validate(
        {"type": "http", "url": f"http://127.0.0.1:{dead}/x", "max_retries": 1, "backoff_s": 0.01}
    )
    with pytest.raises(SourceError) as info:
        read_source(unreachable, ctx(tmp_path))
    assert info.value.transient and "ConnectError" in str(info.value)

    with pytest.raises(SourceError) as info:  # 404 is not retried
        read_source(spec(api, "/missing"), ctx(tmp_path))
    assert not info.value.transient and "answered 404" in str(info.value)
    assert len(api.requests) == 1

    no_auth = HttpSource.model_validate({"type": "http", "url": f"http://127.0.0.1:{api.port}/page"})
    with pytest.raises(SourceError, match="answered 401"):
        read_source(no_auth, ctx(tmp_path))


def test_incremental_sends_and_applies_the_watermark(api, tmp_path) -> None:
    source = spec(
        api,
        "/cursor",
        records="results",
        cursor_param="since",
        pagination={"style": "cursor", "page_size": 4, "next_cursor_path": "meta.next"},
    )
    table = read_source(source, ctx(tmp_path, cursor="updated", watermark="2024-03-20T00:00:00")).read_all()
    assert table.column("id").to_pylist() == [21, 22, 23]
    assert api.requests[0][1]["since"] == "2024-03-20T00:00:00"
    # an API that ignores the parameter: filtered here
    plain = spec(api, "/page", records="data.items", pagination={"style": "page", "page_size": 10})
    table = read_source(plain, ctx(tmp_path, cursor="id", watermark=19)).read_all()
    assert table.column("id").to_pylist() == [20, 21, 22, 23]
