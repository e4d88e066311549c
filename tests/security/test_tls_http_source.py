"""The HTTP API table source against an https server on 127.0.0.1 (stdlib server, trustme certificate):
verified against the environment's `tls.ca`, the wrong CA fails closed, and `tls.required` refuses a
plaintext URL that came from a secret."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from daemon.schema.table_sources import HttpSource
from flows.tables.sources import SourceContext, SourceError, read_source

pytestmark = pytest.mark.security


class Rows(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the http.server API names it so
        body = json.dumps([{"id": i} for i in range(5)]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def https_api(pki):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Rows)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki.cert), str(pki.key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def rows(tmp_path, url: str, tls: dict) -> int:
    spec = HttpSource.model_validate({"type": "http", "url": "secret:API_URL", "max_retries": 0})
    ctx = SourceContext("api_rows", tmp_path, tmp_path, resolve_secret={"secret:API_URL": url}.__getitem__, tls=tls)
    return sum(batch.num_rows for batch in read_source(spec, ctx))


def test_https_api_verified_with_the_environment_ca(https_api, pki, tmp_path):
    assert rows(tmp_path, f"https://localhost:{https_api}/rows", {"ca": str(pki.ca), "required": True}) == 5
    with pytest.raises(SourceError, match="ConnectError"):
        rows(tmp_path, f"https://localhost:{https_api}/rows", {"ca": str(pki.wrong_ca)})


def test_required_refuses_a_plaintext_url_from_a_secret(tmp_path, pki):
    with pytest.raises(SourceError, match="tls.required refuses a plaintext http:// API"):
        rows(tmp_path, "http://127.0.0.1:9/rows", {"ca": str(pki.ca), "required": True})
