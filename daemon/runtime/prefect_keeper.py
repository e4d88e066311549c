"""Keep the daemon's embedded Prefect server alive: a dead server is restarted, with backoff.

Every apply runs as a Prefect flow run, so a Prefect server that died (OOM-killed, SIGKILLed, crashed)
would otherwise turn every later cycle into a failure until someone restarts the daemon. The keeper is a
tick hook of the daemon loop (about once a second): it checks that the server process is alive (cheap:
/proc) and, every few seconds, that `/health` answers; when not, it stops what is left of the old
process group (a SIGKILLed `prefect server start` can leave its uvicorn child holding the port) and
starts a new server on the same port and database, waiting 1, 2, 4 … up to 60 s between failed
attempts. Cycles that fail meanwhile are journaled and retried; commits made meanwhile are planned from
the branch head by the next cycle, so nothing is lost.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable

from daemon.runtime.prefect_server import LocalPrefectServer, healthy

log = logging.getLogger("specd.prefect")


class PrefectKeeper:
    def __init__(self, server: LocalPrefectServer, *, health_every_s: float = 5.0, max_backoff_s: float = 60.0,
                 on_restart: Callable[[str], None] | None = None):
        self.server = server
        self.health_every_s = health_every_s
        self.max_backoff_s = max_backoff_s
        self.on_restart = on_restart or (lambda url: None)
        self.failures = 0
        self.retry_at = 0.0
        self.last_health = time.monotonic()
        self.restarts = 0

    def __repr__(self) -> str:
        return f"PrefectKeeper({self.server.api_url})"

    def down(self) -> bool:
        record = self.server.record
        if record is None or not record.alive():
            return True
        now = time.monotonic()
        if now - self.last_health < self.health_every_s:
            return False
        self.last_health = now
        if healthy(self.server.api_url, timeout=2.0, context=getattr(self.server, "client_context", None)):
            return False
        time.sleep(1.0)  # one slow answer under load is not a dead server: ask once more
        return not healthy(self.server.api_url, timeout=5.0, context=getattr(self.server, "client_context", None))

    def tick(self) -> None:
        if time.monotonic() < self.retry_at or not self.down():
            return
        log.error("the Prefect server at %s is down; restarting it (attempt %d)", self.server.api_url, self.failures + 1)
        self._clear_leftovers()
        try:
            url = self.server.start()
        except Exception as exc:  # try again later, never stop the loop
            self.failures += 1
            delay = min(self.max_backoff_s, 2.0 ** (self.failures - 1))
            self.retry_at = time.monotonic() + delay
            log.error("restarting the Prefect server failed (%s); next attempt in %.0f s", exc, delay)
            return
        self.failures, self.retry_at, self.last_health = 0, 0.0, time.monotonic()
        self.restarts += 1
        log.info("Prefect server restarted on %s", url)
        self.on_restart(url)

    def _clear_leftovers(self) -> None:
        """Kill what remains of the dead server's process group (children that still hold the port)."""
        record = self.server.record
        if record is None:
            return
        try:
            os.killpg(record.pid, signal.SIGKILL)  # the group id outlives its leader only while members live
        except (ProcessLookupError, PermissionError):
            pass
        self.server.record = None
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and healthy(self.server.api_url, timeout=0.5, context=getattr(self.server, "client_context", None)):
            time.sleep(0.1)
