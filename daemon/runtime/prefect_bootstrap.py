"""The one Prefect bootstrap of `specd run` and `specd apply`: which Prefect API this process talks to.

`PREFECT_API_URL` in the environment wins, then the overlay's `prefect.api_url`; otherwise the state
home's own `prefect server start` is adopted or started (`LocalPrefectServer`). The client settings are
set before anything imports prefect. Returns the server we started (the caller stops it), or None.
An https:// API is verified against the environment's `tls.ca` (PREFECT_API_SSL_CERT_FILE, unless set);
with `tls.required` only an https:// API is accepted (the embedded server speaks plain HTTP).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from daemon.runtime.prefect_server import LocalPrefectServer, configure_client_env
from daemon.schema.environment import EnvironmentSpec

log = logging.getLogger(__name__)


def bootstrap_prefect(home: Path, env: EnvironmentSpec | None) -> LocalPrefectServer | None:
    configure_client_env(home)
    external = os.environ.get("PREFECT_API_URL") or (env.prefect.api_url if env else None)
    if env is not None and env.tls.required and not (external or "").lower().startswith("https://"):
        # validate refuses the overlay's http:// or embedded server; this is PREFECT_API_URL from the shell
        raise RuntimeError("tls.required: the Prefect API must be an https:// server (PREFECT_API_URL / prefect.api_url)")
    if external:
        os.environ["PREFECT_API_URL"] = external
        if env is not None and env.tls.ca and external.lower().startswith("https://"):
            from daemon.shared import tls

            files = tls.resolve(env.tls, home)
            if files is not None and files.ca:  # Prefect's client (and every flow-run process) verifies with it
                os.environ.setdefault("PREFECT_API_SSL_CERT_FILE", files.ca)
        log.info("using Prefect at %s", external)
        return None
    server = LocalPrefectServer(home, env.prefect.host if env else "127.0.0.1", env.prefect.port if env else 4200)
    os.environ["PREFECT_API_URL"] = server.start()
    log.info("Prefect UI on http://%s:%d", server.host, server.port)
    return server
