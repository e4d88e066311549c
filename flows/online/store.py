"""Connections to the online store (Redis): URL, auth and TLS from the environment, bounded timeouts.

One place builds the client options, so the daemon (observe, materialise) and the services (lookups)
connect the same way. Secrets stay references until here: a `${secret:NAME}` URL or password is
resolved only when a connection is made, and `display_url` never shows a password.

TLS: the environment's `tls` section is the default source of the client's TLS options — the embedded
store listens on TLS only when `tls.cert` is set (`rediss://`), any `rediss://` store is verified against
`tls.ca` unless `ssl_ca_certs` says otherwise, and specd's certificate is presented under mTLS. With
`tls.required`, a plaintext `redis://` URL (even one hidden in a secret) is refused before connecting.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

EMBEDDED_HOST = "127.0.0.1"


def store_settings(section: Any, tls: Any = None) -> dict[str, Any]:
    """The environment's `online_store` section (and its `tls`) as plain data (secret references kept)."""
    from daemon.shared.tls import settings as tls_settings

    return {
        **({"tls": tls_settings(tls)} if tls is not None and tls_settings(tls) else {}),  # absent without TLS: routing unchanged
        "url": section.url,
        "port": section.port,
        "username": section.username,
        "password": section.password,
        "ssl_ca_certs": section.ssl_ca_certs,
        "ssl_certfile": section.ssl_certfile,
        "ssl_keyfile": section.ssl_keyfile,
        "prefix": section.prefix,
        "timeout_s": section.timeout_s,
        "batch_rows": section.batch_rows,
    }


def _resolve(value: Any) -> Any:
    from daemon.shared.secrets import is_secret_ref, resolve_secret

    return resolve_secret(value) if is_secret_ref(value) else value


def embedded_tls(settings: dict[str, Any]) -> bool:
    """The embedded store listens on TLS only (the environment's `tls.cert` is set)."""
    return settings.get("url") is None and bool((settings.get("tls") or {}).get("cert"))


def resolved_url(settings: dict[str, Any]) -> str:
    url = settings.get("url")
    if url is None:
        scheme = "rediss" if embedded_tls(settings) else "redis"
        return f"{scheme}://{EMBEDDED_HOST}:{int(settings.get('port') or 6390)}/0"
    resolved = str(_resolve(url))
    if (settings.get("tls") or {}).get("required") and not resolved.startswith(("rediss://", "unix://")):
        raise ValueError("online_store.url: tls.required refuses a plaintext redis:// store (use rediss://)")
    return resolved


def display_url(settings: dict[str, Any]) -> str:
    """Where the store is, for messages: secret URLs by their reference, passwords never."""
    url = settings.get("url")
    if url is None:
        scheme = "rediss" if embedded_tls(settings) else "redis"
        return f"{scheme}://{EMBEDDED_HOST}:{int(settings.get('port') or 6390)} (embedded)"
    from daemon.shared.secrets import is_secret_ref

    if is_secret_ref(url):
        return f"${{{url}}}"
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def client_options(settings: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
    """Keyword arguments for `redis.Redis.from_url` (sync and asyncio alike): no retries, bounded waits."""
    timeout = float(timeout_s if timeout_s is not None else settings.get("timeout_s") or 1.0)
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry_on_timeout": False,
        "health_check_interval": 0,
    }
    if settings.get("username"):
        options["username"] = settings["username"]
    if settings.get("password"):
        options["password"] = _resolve(settings["password"])
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if settings.get(name):
            options[name] = _resolve(settings[name])
    if _tls_url(settings):
        options.update({k: v for k, v in tls_defaults(settings).items() if k not in options})
    return options


def _tls_url(settings: dict[str, Any]) -> bool:
    url = settings.get("url")
    if url is None:
        return embedded_tls(settings)
    from daemon.shared.secrets import is_secret_ref

    return (str(_resolve(url)) if is_secret_ref(url) else str(url)).startswith("rediss://")


def tls_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """redis-py's ssl_* options from the environment's `tls` section (files resolved from secrets now)."""
    from daemon.shared import tls

    files = tls.resolve(settings.get("tls") or None)
    if files is None:
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True,
                               "ssl_min_version": tls.VERSIONS[files.min_version]}
    if files.ca:
        options["ssl_ca_certs"] = files.ca
    if files.require_client_cert and files.cert:
        options.update(ssl_certfile=files.cert, ssl_keyfile=files.key)
    return options


def connect(settings: dict[str, Any], timeout_s: float | None = None) -> Any:
    """A synchronous client (redis-py; hiredis parses replies when installed). Connects lazily."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(resolved_url(settings), retry=Retry(NoBackoff(), 0), **client_options(settings, timeout_s))


def connect_async(settings: dict[str, Any], timeout_s: float | None = None) -> Any:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return aioredis.Redis.from_url(resolved_url(settings), retry=Retry(NoBackoff(), 0), **client_options(settings, timeout_s))
