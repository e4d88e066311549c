"""A Prefect API for a benchmark: the one PREFECT_API_URL names, or a local server for the run."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port


@contextmanager
def prefect_api() -> Iterator[str]:
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from daemon.runtime.prefect_server import LocalPrefectServer, configure_client_env

    home = Path(tempfile.mkdtemp(prefix="bench-prefect-"))
    configure_client_env(home)
    server = LocalPrefectServer(home, port=free_port())
    os.environ["PREFECT_API_URL"] = server.start(timeout_s=120)
    try:
        yield os.environ["PREFECT_API_URL"]
    finally:
        server.stop()
        os.environ.pop("PREFECT_API_URL", None)
