"""The embedded Prefect server: started and owned by the daemon unless PREFECT_API_URL points elsewhere.

Prefect 3 has no server-less mode (the first flow call would start a temporary server, 10–16 s, per
run). The daemon therefore keeps one long-lived `prefect server start` (SQLite under the state home, UI
on 127.0.0.1) and adopts it after its own restart instead of starting a second one.

It runs lean (`LEAN_SERVICES`): the server's loop services that specd never needs are off, because each
wakes every 5–20 s whether or not anything happens (issue 14: the default server burned ~1.8 s CPU per
idle minute). Kept: the scheduler (table schedules), the task run recorder and event persister (what
the UI shows of each reconcile: task runs, their states and events), the hourly database vacuum and the
UI. Off: late runs (only relabels scheduled runs "Late"), foreman (work pools and workers: specd uses
none), cancellation cleanup and pause expirations (specd's flow runs neither pause nor get cancelled
from the UI), the repossessor (concurrency-limit leases: none are set), triggers (automations) and the
cleanup reconciler (worker cleanup queues). Any of them is switched back on by setting its
`PREFECT_SERVER_SERVICES_<NAME>_ENABLED` in the daemon's environment. With a work pool
(`training.work_pool`) the foreman stays on (`POOL_SERVICES`): it is what marks a worker that stopped
polling OFFLINE and the pool NOT_READY, the status `prefect work-pool inspect` and the UI show.
on 127.0.0.1) and adopts it after its own restart instead of starting a second one. With remote
workers SQLite locks ("database is locked", prefect#10188), so `prefect.database_url` puts the same
server on PostgreSQL (asyncpg); the URL comes from a secret and is never logged or written down —
only its digest, so that a changed database restarts the server instead of adopting the old one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import sys
import time
import urllib.request
from pathlib import Path

from daemon.shared import procs
from daemon.shared.paths import logs_dir, prefect_home, runtime_dir
from daemon.shared.tls import TLSFiles, client_context

QUIET = {
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}
LEAN_SERVICES = {
    f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false"
    for name in ("LATE_RUNS", "FOREMAN", "CANCELLATION_CLEANUP", "PAUSE_EXPIRATIONS", "REPOSSESSOR", "TRIGGERS", "CLEANUP_RECONCILER")
}

POOL_SERVICES = ("FOREMAN",)  # needed once remote workers poll a work pool


def lean_services(work_pools: bool = False) -> dict[str, str]:
    """The loop services switched off; with work pools, the ones workers need stay on."""
    keep = {f"PREFECT_SERVER_SERVICES_{name}_ENABLED" for name in POOL_SERVICES} if work_pools else set()
    return {key: value for key, value in LEAN_SERVICES.items() if key not in keep}


def configure_client_env(home: Path) -> None:
    """Environment for the Prefect *client* in this process (must run before `import prefect`)."""
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(prefect_home(home)))

log = logging.getLogger(__name__)


def healthy(api_url: str, timeout: float = 1.0, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout, context=context) as response:
            return response.status == 200
    except OSError:
        return False


def async_database_url(url: str) -> str:
    """A PostgreSQL URL in the form Prefect's server needs (`postgresql+asyncpg://`); other URLs unchanged."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


class LocalPrefectServer:
    def __init__(self, home: Path, host: str = "127.0.0.1", port: int = 4200, database_url: str | None = None,
                 work_pools: bool = False, tls: TLSFiles | None = None):
        self.home = home
        self.work_pools = work_pools
        self.host = host
        self.port = port
        self.database_url = async_database_url(database_url) if database_url else None
        self.database_digest = hashlib.sha256((self.database_url or "sqlite").encode()).hexdigest()[:16]
        # with the environment's certificate the server speaks HTTPS only (daemon.runtime.prefect_tls_server)
        self.tls = tls if tls is not None and tls.serving else None
        self.client_context = client_context(self.tls) if self.tls else None
        self.pid_file = runtime_dir(home) / "prefect-server.json"
        self.record: procs.PidRecord | None = None

    @property
    def api_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/api"

    def start(self, timeout_s: float = 600.0, attempts: int = 3) -> str:
        """Adopt a running server of ours or start one; return its API URL once healthy.

        A start-up must not fail on a slow machine: while the server process is alive it is making
        progress (migrations, UI build), so it is waited for — with a progress line every 15 s — up to
        `timeout_s`; a process that dies is started again with backoff, `attempts` times in all."""
        existing = procs.PidRecord.read(self.pid_file)
        sqlite = hashlib.sha256(b"sqlite").hexdigest()[:16]  # records written before database_url existed
        same_db = existing is not None and existing.meta.get("database", sqlite) == self.database_digest
        same_tls = existing is not None and bool(existing.meta.get("tls")) == bool(self.tls)
        if existing and existing.alive() and existing.meta.get("port") == self.port and same_db and same_tls:
            if self._wait_healthy(existing, 30.0):
                self.record = existing
                return self.api_url
            procs.stop_group(existing.pid, existing.start_time)
        elif existing and existing.alive():
            procs.stop_group(existing.pid, existing.start_time)
        log_path = logs_dir(self.home) / "prefect-server.log"
        for attempt in range(1, attempts + 1):
            self.record = self._spawn(log_path)
            if self._wait_healthy(self.record, timeout_s):
                return self.api_url
            alive = self.record.alive()
            procs.stop_group(self.record.pid, self.record.start_time)
            if alive:  # alive but never healthy within the ceiling: starting again would not help
                break
            if attempt < attempts:
                delay = 2.0 ** attempt
                log.warning("the Prefect server exited during start-up (attempt %d/%d); starting it again in %.0fs (log: %s)",
                            attempt, attempts, delay, log_path)
                time.sleep(delay)
        raise RuntimeError(f"Prefect server did not become healthy on {self.api_url} (log: {log_path})")

    def _spawn(self, log_path: Path) -> procs.PidRecord:
        home = prefect_home(self.home)
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **lean_services(self.work_pools),  # the environment may switch one back on
            **os.environ,
            **QUIET,
            "PREFECT_HOME": str(home),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            "PREFECT_UI_API_URL": self.api_url,
        }
        env.pop("PREFECT_API_URL", None)
        if self.tls:
            env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
            command = [sys.executable, "-m", "daemon.runtime.prefect_tls_server", "--host", self.host, "--port", str(self.port),
                       "--certfile", str(self.tls.cert), "--keyfile", str(self.tls.key), "--min-version", self.tls.min_version]
        else:
            command = [sys.executable, "-m", "prefect", "server", "start", "--host", self.host, "--port", str(self.port), "--analytics-off"]
        proc = procs.spawn(command, log_path=log_path, env=env)
        record = procs.record_for(proc, {"port": self.port, "database": self.database_digest, "tls": bool(self.tls)})
        record.write(self.pid_file)
        return record

    def _wait_healthy(self, record: procs.PidRecord, timeout_s: float) -> bool:
        started = time.monotonic()
        deadline, next_note = started + timeout_s, started + 15.0
        while time.monotonic() < deadline:
            if healthy(self.api_url, context=self.client_context):
                return True
            if not record.alive():
                return False
            if time.monotonic() >= next_note:
                log.info("waiting for the Prefect server on %s (%.0fs so far)", self.api_url, time.monotonic() - started)
                next_note += 15.0
            time.sleep(0.25)
        return False

    def stop(self) -> None:
        if self.record:
            procs.stop_group(self.record.pid, self.record.start_time, grace_s=10.0)
            self.record = None
        self.pid_file.unlink(missing_ok=True)
