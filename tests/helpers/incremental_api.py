"""A tiny incremental HTTP source for tests: `GET /?since=N` answers the records whose `id` is above N.

Tests set `IncrementalApi.records` before serving it with `tests.conftest.http_server` and append to it
between cycles, so new rows "land" upstream the way an append-only API would hand them out.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse


class IncrementalApi(BaseHTTPRequestHandler):
    records: list[dict] = []

    def do_GET(self) -> None:
        since = int(parse_qs(urlparse(self.path).query).get("since", ["0"])[0])
        body = json.dumps({"items": [r for r in self.records if r["id"] > since]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        """Quiet: no access log on the test's stderr."""
