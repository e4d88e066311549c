"""The one Prefect bootstrap of `specd run` and `specd apply`: which Prefect API this process talks to.

`PREFECT_API_URL` in the environment wins, then the overlay's `prefect.api_url` (with `prefect.api_key`
from its secret as PREFECT_API_KEY); otherwise the state home's own `prefect server start` is adopted or
started (`LocalPrefectServer`), on PostgreSQL when `prefect.database_url` names one. The client settings are
set before anything imports prefect. Returns the server we started (the caller stops it), or None.
An https:// API is verified against the environment's `tls.ca` (PREFECT_API_SSL_CERT_FILE, unless set);
with `tls.required` only an https:// API is accepted. With `tls.cert`/`tls.key` the embedded server
itself speaks HTTPS only (daemon.runtime.prefect_tls_server), verified with `tls.ca`.

The embedded server's URL is known before it is up, so PREFECT_API_URL is set first and the Prefect
client (~1 s of CPU, 3 s on a loaded machine) is imported in a thread while the server starts: the
first reconcile no longer pays for it after the server is healthy (issue 14: first cycle ≤ 3 s).
The embedded server runs without CSRF protection (Prefect's default), so its client does not fetch a
CSRF token for every reconcile's new client either (one round trip per cycle), unless the
environment turned the server's protection on.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from pathlib import Path

from daemon.runtime.prefect_server import LocalPrefectServer, configure_client_env
from daemon.schema.environment import EnvironmentSpec
from daemon.shared.secrets import resolve_secret

log = logging.getLogger(__name__)


def bootstrap_prefect(home: Path, env: EnvironmentSpec | None) -> LocalPrefectServer | None:
    configure_client_env(home)
    external = os.environ.get("PREFECT_API_URL") or (env.prefect.api_url if env else None)
    files = None
    if env is not None and not external and (env.tls.cert or env.tls.ca):
        from daemon.shared import tls

        files = tls.resolve(env.tls, home)
    embedded_tls = files is not None and files.serving
    if env is not None and env.tls.required and not (external or "").lower().startswith("https://") and not (not external and embedded_tls):
        # validate refuses the overlay's http:// server, or an embedded one without tls.cert/key; this is PREFECT_API_URL from the shell
        raise RuntimeError("tls.required: the Prefect API must be an https:// server (PREFECT_API_URL / prefect.api_url)")
    if external:
        os.environ["PREFECT_API_URL"] = external
        if env is not None and env.tls.ca and external.lower().startswith("https://"):
            from daemon.shared import tls

            files = tls.resolve(env.tls, home)
            if files is not None and files.ca:  # Prefect's client (and every flow-run process) verifies with it
                os.environ.setdefault("PREFECT_API_SSL_CERT_FILE", files.ca)
        if env and env.prefect.api_key:
            os.environ["PREFECT_API_KEY"] = resolve_secret(env.prefect.api_key)
        log.info("using Prefect at %s", external)
        threading.Thread(target=preload_client, name="prefect-preload", daemon=True).start()  # the first cycle waits only for what is left
        return None
    database = resolve_secret(env.prefect.database_url) if env and env.prefect.database_url else None
    server = LocalPrefectServer(home, env.prefect.host if env else "127.0.0.1", env.prefect.port if env else 4200, database,
                                work_pools=bool(env and (env.training.work_pool or env.tables.work_pool)),
                                tls=files if embedded_tls else None)
    os.environ["PREFECT_API_URL"] = server.api_url
    if embedded_tls and files is not None and files.ca:  # the client and every flow-run process verify the server with it
        os.environ["PREFECT_API_SSL_CERT_FILE"] = files.ca
    if os.environ.get("PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED", "").lower() not in ("1", "true", "yes", "on"):
        os.environ.setdefault("PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", "false")
    warm = threading.Thread(target=preload_client, name="prefect-preload", daemon=True)
    warm.start()
    try:
        server.start()
    except BaseException:
        os.environ.pop("PREFECT_API_URL", None)
        raise
    warm.join()  # imports hold a lock: finished here rather than half-way through a first flow run
    log.info("Prefect UI on %s://%s:%d (database: %s)", "https" if server.tls else "http", server.host, server.port,
             "PostgreSQL" if database else "SQLite")
    return server


# What the first flow run imported beyond `import prefect` (measured: sys.modules before and after it).
CLIENT_MODULES = ("prefect", "prefect.flows", "prefect.tasks", "prefect.artifacts", "prefect.cache_policies",
                  "prefect.client.orchestration", "prefect.logging.handlers", "prefect.flow_engine", "prefect.task_engine",
                  "prefect.engine", "prefect.transactions", "prefect.utilities.visualization", "prefect.concurrency.asyncio",
                  "prefect.concurrency.v1.asyncio", "prefect.runtime", "prefect.main", "fastapi", "pydantic.v1", "anyio._backends._asyncio")


def preload_client() -> None:
    """Import what a reconcile's flow run uses (daemon.runtime.prefect_runner); errors surface there."""
    for name in CLIENT_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # reported by the flow run that needs it, with its context
            log.debug("preloading %s failed", name, exc_info=True)
            return
