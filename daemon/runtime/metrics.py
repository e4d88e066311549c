"""The daemon's Prometheus metrics and its small HTTP server: /metrics, /healthz, /status, POST /sync.

With an access policy in the spec repository (`specs/access/`), every route but /healthz asks it
(`ROUTES`: route → resource, action, object); without one the server behaves as before (open).

Base units and `_total` counters; a git sha is never a counter label (revisions go in `_info` gauges
whose old series are removed on change). Single-process registry: no multiprocess mode in the daemon.
Binds to 127.0.0.1 unless configured otherwise. With `tls` (an `ssl.SSLContext` from
`daemon.shared.tls.server_context`) it speaks HTTPS only: each connection's handshake runs in its own
thread, so a silent or plaintext client cannot stall the others.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from daemon.shared.scrub import scrub, scrub_obj

# Kinds' own metric modules: imported by the daemon at start-up (the adapters import them only when they
# record, so that `specd plan` never loads prometheus_client for them).
KIND_METRICS = ("daemon.adapters.tables.metrics", "daemon.adapters.models.metrics")
RECONCILE_RUNS = Counter("specd_reconcile_runs", "Reconcile cycles by result (success, failed, rejected, noop).", ["result"])
RECONCILE_DURATION = Histogram(
    "specd_reconcile_duration_seconds",
    "Duration of reconcile cycles that applied changes or checked for drift.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
RESOURCES = Gauge("specd_resources", "Resources by kind, sync and health.", ["kind", "sync", "health"])
RESOURCE_SYNCED = Gauge("specd_resource_synced", "1 when the resource matches its spec.", ["kind", "name"])
RESOURCE_HEALTHY = Gauge("specd_resource_healthy", "1 when the resource is healthy.", ["kind", "name"])
LAST_SUCCESS = Gauge("specd_last_successful_sync_timestamp_seconds", "Unix time of the last cycle that left everything in sync.")
DESIRED_REVISION = Gauge("specd_desired_revision_info", "The git revision the daemon is trying to apply.", ["revision"])
APPLIED_REVISION = Gauge("specd_applied_revision_info", "The git revision last applied completely.", ["revision"])
REJECTED_COMMITS = Counter("specd_rejected_commits", "Commits rejected as invalid (nothing was applied).")
ACTIONS = Counter("specd_actions", "Applied actions by kind, op and result.", ["kind", "op", "result"])
ACTION_DURATION = Histogram(
    "specd_action_duration_seconds", "Duration of one applied action.", ["kind", "op"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
IN_SYNC = Gauge("specd_in_sync", "1 when the applied revision equals the desired revision and all resources are synced.")


def set_revision(gauge: Gauge, revision: str | None) -> None:
    gauge.clear()
    if revision:
        gauge.labels(revision=revision).set(1)


def record_statuses(statuses: Iterable[Any]) -> None:
    """Replace the per-resource gauges with the current statuses (removed resources disappear)."""
    statuses = list(statuses)
    tally = Tally((s.kind, s.sync, s.health) for s in statuses)
    RESOURCES.clear()
    RESOURCE_SYNCED.clear()
    RESOURCE_HEALTHY.clear()
    for (kind, sync, health), count in tally.items():
        RESOURCES.labels(kind=kind, sync=sync, health=health).set(count)
    for s in statuses:
        RESOURCE_SYNCED.labels(kind=s.kind, name=s.name).set(1 if s.sync == "Synced" else 0)
        RESOURCE_HEALTHY.labels(kind=s.kind, name=s.name).set(1 if s.health == "Healthy" else 0)


# (method, path) → (resource, action, object) asked of the access policy; None: always open.
ROUTES: dict[tuple[str, str], tuple[str, str, str] | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/metrics"): ("daemon", "read", "metrics"),
    ("GET", "/status"): ("daemon", "read", "status"),
    ("POST", "/sync"): ("daemon", "sync", "*"),
}


class _TLSServer(ThreadingHTTPServer):
    """ThreadingHTTPServer whose accepted sockets are wrapped for TLS; the handshake happens in the
    request's thread (Handler.setup), bounded by HANDSHAKE_TIMEOUT_S."""

    HANDSHAKE_TIMEOUT_S = 10.0

    def __init__(self, address: tuple[str, int], handler: type, context: ssl.SSLContext):
        self.context = context
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        sock.settimeout(self.HANDSHAKE_TIMEOUT_S)
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:  # failed handshakes: not tracebacks
        logging.getLogger("specd").debug("TLS connection from %s failed", client_address[0], exc_info=True)


class MetricsServer:
    """/metrics (Prometheus text), /healthz (liveness), /status (the daemon's status as JSON), POST /sync
    (start a cycle now). `access` (a `daemon.shared.access_policy.Gate`) is swapped in by the daemon
    when the policy's digest changes; None means no policy."""

    def __init__(self, host: str, port: int, status: Callable[[], dict[str, Any]], on_sync: Callable[[], None] | None = None,
                 tls: ssl.SSLContext | None = None):
        self.status = status
        self.scheme = "https" if tls is not None else "http"
        self.on_sync = on_sync
        self.access: Any = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.do_handshake()  # raises on plaintext, a wrong CA or no client certificate
                    self.request.settimeout(None)
                super().setup()

            def _allowed(self, method: str, path: str) -> bool:
                target = ROUTES.get((method, path))
                gate = outer.access
                if target is None or gate is None:
                    return True
                decision = gate.check(self.headers, *target)
                if decision.status != 200:
                    body = json.dumps({"error": decision.message, "status": decision.status}).encode()
                    self._send(decision.status, body, "application/json")
                    return False
                return True

            def do_POST(self) -> None:  # the http.server API names it so
                path = self.path.split("?", 1)[0]
                if (("POST", path)) not in ROUTES:
                    self._send(404, b'{"error":"not found"}', "application/json")
                elif self._allowed("POST", path):
                    if outer.on_sync is not None:
                        outer.on_sync()
                    self._send(202, b'{"status":"sync requested"}', "application/json")

            def do_GET(self) -> None:  # the http.server API names it so
                path = self.path.split("?", 1)[0]
                if ("GET", path) in ROUTES and not self._allowed("GET", path):
                    return
                if path == "/metrics":  # label values come from names and messages: no secret in any
                    self._send(200, scrub(generate_latest(REGISTRY).decode()).encode(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b'{"status":"ok"}', "application/json")
                elif path == "/status":
                    body = json.dumps(scrub_obj(outer.status()), default=str).encode()
                    self._send(200, body, "application/json")
                else:
                    self._send(404, b'{"error":"not found"}', "application/json")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: scrapes every few seconds
                return

        self.httpd = _TLSServer((host, port), Handler, tls) if tls is not None else ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="specd-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
