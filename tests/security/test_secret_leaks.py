"""After a run against an upstream that echoes the bearer token in its 401 body, the token is found in
0 bytes of the state home (journal, status file, table failure records, logs, the Prefect database) and
of the daemon's own log — in any of the forms it could take there (raw, base64, URL-encoded).

A real daemon (`specd run`, applying through the test session's real Prefect server, whose SQLite
database is searched too) follows a real git repository holding one HTTP table whose auth comes from `${secret:UPSTREAM_TOKEN}`;
the fake upstream (stdlib HTTP server on 127.0.0.1) answers 401 with the Authorization header it
received in the body, as many real APIs do. The echo does reach specd — the table's status says
"answered 401" — but only as `***`.
"""

from __future__ import annotations

import base64
import json
import os
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import http_server
from tests.e2e.conftest import DaemonProcess

pytestmark = pytest.mark.security
TOKEN = "live_tok_5Gh8Qw2Zr9Lm4Xv7Bn1Kc3Jd"


class EchoingApi(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"error": "invalid credentials", "received": self.headers.get("Authorization")}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _forms(value: str) -> list[bytes]:
    return [value.encode(), base64.b64encode(value.encode()), quote(value, safe="").encode(), base64.b64encode(f"Bearer {value}".encode())]


def _leaks(root: Path) -> dict[str, int]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits = sum(data.count(form) for form in _forms(TOKEN))
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


def _prefect_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQLite database of the session's Prefect server (tests/conftest.py `prefect_api`)."""
    found = sorted(tmp_path_factory.getbasetemp().glob("prefect-home*/prefect/prefect.db"))
    assert found, "the session Prefect server keeps its database under <basetemp>/prefect-home*/prefect/"
    return found[-1].parent


def test_an_echoed_bearer_token_is_found_nowhere(spec_repo, home, prefect_api: str, tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("SPECD_TEST_PREFECT_API_URL"):
        pytest.skip("the Prefect server is external (SPECD_TEST_PREFECT_API_URL): its database cannot be searched")
    with http_server(EchoingApi) as port:
        spec_repo.write("specs/tables/api_items.yaml", f"""
            source:
              type: http
              url: http://127.0.0.1:{port}/items
              auth: {{header: Authorization, scheme: Bearer, value: "${{secret:UPSTREAM_TOKEN}}"}}
              max_retries: 0
        """)
        spec_repo.commit("an http table")
        daemon = DaemonProcess(spec_repo.path, home, prefect_api, {"UPSTREAM_TOKEN": TOKEN}).start()
        try:
            def failed_with_echo(status: dict) -> bool:
                table = next((r for r in status.get("resources", []) if r["name"] == "api_items"), None)
                return bool(table) and "answered 401" in table["message"]

            status = daemon.wait_for(failed_with_echo, timeout=180, what="the table to fail with the upstream's 401")
            message = next(r["message"] for r in status["resources"] if r["name"] == "api_items")
            assert '"received": "Bearer ***"' in message, message  # the echo arrived, masked
            assert any(e["type"] == "ActionFailed" and "***" in e.get("message", "") for e in daemon.journal())
        finally:
            daemon.stop()
    prefect_dir = _prefect_database(tmp_path_factory)
    flow_runs = b"".join(p.read_bytes() for p in prefect_dir.glob("prefect.db*"))
    assert b"specd-reconcile" in flow_runs and b"api_items" in flow_runs  # the flow and its task run are recorded there
    assert (home / "events.jsonl").is_file() and (home / "status.json").is_file()
    assert _leaks(home) == {}
    assert _leaks(prefect_dir) == {}
    log = daemon.log_path.read_bytes()
    assert b"answered 401" in log and all(form not in log for form in _forms(TOKEN))
