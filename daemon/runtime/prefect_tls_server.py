"""The embedded Prefect server over HTTPS: `python -m daemon.runtime.prefect_tls_server`.

`prefect server start` has no TLS options, yet in an environment with `tls.cert`/`tls.key` every socket
specd opens must speak TLS (issue 16). The CLI itself is a thin wrapper over uvicorn serving
`prefect.server.api.server:create_app(final=True)` (prefect/cli/_server_utils.py, `_run_in_foreground`),
so this module runs the very same app under uvicorn with the environment's certificate and key and a
protocol floor (`tls.min_version`; uvicorn has no flag for one, so its context factory is wrapped, as
for `bentoml serve`). Client certificates are not required here even under mTLS: Prefect's client
cannot present one, and the server binds to the daemon's host (127.0.0.1 by default).

The daemon (daemon/runtime/prefect_server.py) starts it instead of `prefect server start` when the
environment serves TLS; its clients verify it with `PREFECT_API_SSL_CERT_FILE` = `tls.ca`.
"""

from __future__ import annotations

import argparse
import ssl
from typing import Any

VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def _enforce_floor(version: str) -> None:
    import uvicorn.config

    floor = VERSIONS[version]
    original = uvicorn.config.create_ssl_context

    def create_ssl_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = original(*args, **kwargs)
        context.minimum_version = floor
        return context

    uvicorn.config.create_ssl_context = create_ssl_context


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m daemon.runtime.prefect_tls_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    parser.add_argument("--min-version", choices=sorted(VERSIONS), default="TLSv1.2")
    args = parser.parse_args(argv)

    import prefect
    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import PREFECT_SERVER_API_KEEPALIVE_TIMEOUT, PREFECT_SERVER_LOGGING_LEVEL

    _enforce_floor(args.min_version)
    uvicorn.run(
        app=create_app(final=True),
        app_dir=str(prefect.__module_path__.parent),
        host=args.host,
        port=args.port,
        timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value(),
        log_level=str(PREFECT_SERVER_LOGGING_LEVEL.value()).lower(),
        ssl_certfile=args.certfile,
        ssl_keyfile=args.keyfile,
    )


if __name__ == "__main__":
    main()
