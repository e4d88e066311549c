"""The one Prefect bootstrap of `specd run` and `specd apply`: which Prefect API this process talks to.

`PREFECT_API_URL` in the environment wins, then the overlay's `prefect.api_url` (with `prefect.api_key`
from its secret as PREFECT_API_KEY); otherwise the state home's own `prefect server start` is adopted or
started (`LocalPrefectServer`), on PostgreSQL when `prefect.database_url` names one. The client settings are
set before anything imports prefect. Returns the server we started (the caller stops it), or None.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from daemon.runtime.prefect_server import LocalPrefectServer, configure_client_env
from daemon.schema.environment import EnvironmentSpec
from daemon.shared.secrets import resolve_secret

log = logging.getLogger(__name__)


def bootstrap_prefect(home: Path, env: EnvironmentSpec | None) -> LocalPrefectServer | None:
    configure_client_env(home)
    external = os.environ.get("PREFECT_API_URL") or (env.prefect.api_url if env else None)
    if external:
        os.environ["PREFECT_API_URL"] = external
        if env and env.prefect.api_key:
            os.environ["PREFECT_API_KEY"] = resolve_secret(env.prefect.api_key)
        log.info("using Prefect at %s", external)
        return None
    database = resolve_secret(env.prefect.database_url) if env and env.prefect.database_url else None
    server = LocalPrefectServer(home, env.prefect.host if env else "127.0.0.1", env.prefect.port if env else 4200, database)
    os.environ["PREFECT_API_URL"] = server.start()
    log.info("Prefect UI on http://%s:%d (database: %s)", server.host, server.port, "PostgreSQL" if database else "SQLite")
    return server
