"""`tls.required: true`: every plaintext endpoint in the environment and the specs is a validation error.

Why at validate: a plaintext URL in a commit is a review finding, not a runtime surprise; the error
names the file, line and field like every other spec error. Defaults count too (an unset
`prometheus.url` is `http://127.0.0.1:9090`). Endpoints hidden in secrets cannot be seen here; the
clients refuse them when they resolve them (flows/online/store.py, flows/tables/sources/sql_db.py).
Links that specd never connects to (runbook URLs, descriptions) are not endpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from daemon.shared.errors import SpecIssue

NOT_ENDPOINTS = frozenset({"description", "summary", "title", "legend", "runbook_url", "runbook_base_url", "help"})
VERIFIED_SSLMODES = frozenset({"verify-full", "verify-ca"})


def plaintext_reason(value: str) -> str | None:
    """Why this URL would travel in plaintext (None: it is TLS, or not a network URL)."""
    lowered = value.strip().lower()
    if lowered.startswith("http://"):
        return "plaintext http:// endpoint; tls.required needs https://"
    if lowered.startswith("redis://"):
        return "plaintext redis:// endpoint; tls.required needs rediss://"
    if lowered.startswith(("ws://",)):
        return "plaintext ws:// endpoint; tls.required needs wss://"
    if lowered.startswith(("postgresql", "postgres://")):
        modes = parse_qs(urlsplit(value).query).get("sslmode", [])
        if not modes or modes[-1] not in VERIFIED_SSLMODES:
            return "PostgreSQL URL without sslmode=verify-full (or verify-ca); tls.required refuses it"
    return None


def _shown(value: str) -> str:
    """The URL's scheme and host for the message (never user info, path or query)."""
    parts = urlsplit(value.strip())
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


def _strings(data: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key not in NOT_ENDPOINTS:
                yield from _strings(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings(value, path + (index,))
    elif isinstance(data, str):
        yield path, data


def plaintext_issues(env: Any, env_locate: Callable[[tuple], tuple[str, int]], docs: list[Any],
                     doc_line: Callable[[Any, tuple], int]) -> list[SpecIssue]:
    """Issues for every plaintext endpoint when `env.tls.required`; none otherwise."""
    if not env.tls.required:
        return []
    issues: list[SpecIssue] = []
    env_data = env.model_dump(mode="json", by_alias=True)
    for key_path, value in _strings(env_data):
        reason = plaintext_reason(value)
        if reason is None and str(key_path[-1]).lower() in ("aws_allow_http", "allow_http") and value.strip().lower() in ("1", "true", "yes"):
            path, line = env_locate(key_path)
            issues.append(SpecIssue(path, line, ".".join(map(str, key_path)), "allow_http: tls.required refuses plaintext object storage"))
            continue
        if reason:
            path, line = env_locate(key_path)
            issues.append(SpecIssue(path, line, ".".join(map(str, key_path)), f"{_shown(value)}: {reason}"))
    if env.prefect.api_url is None and not (env.tls.cert and env.tls.key):
        path, line = env_locate(("prefect",))
        issues.append(SpecIssue(path, line, "prefect.api_url",
                                "tls.required: the embedded Prefect server serves HTTPS only with tls.cert and tls.key; set them, or an https:// prefect.api_url"))
    for doc in docs:
        for key_path, value in _strings(doc.data):
            reason = plaintext_reason(value)
            if reason:
                issues.append(SpecIssue(doc.path, doc_line(doc, key_path), ".".join(map(str, key_path)), f"{_shown(value)}: {reason}"))
    return issues
