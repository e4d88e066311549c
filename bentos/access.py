"""The access policy at a service's door: one ASGI middleware in front of every route BentoML serves.

Why a middleware and not a check in each endpoint: BentoML's own routes (`/metrics`, `/docs.json`, the
Swagger UI) have no endpoint of ours to hook, and deny-by-default is only true if nothing can bypass
it. The policy (texts + key digests) arrives in the routing file each worker already polls
(`settings.access`), so a merged policy change is live without a restart; without one the service
behaves as before (`auth: {required, api_keys}` still applies to /predict and /feedback).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from daemon.shared.access_policy import Gate

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
# (method, path) → action on resource `services/<name>`; every other path needs `read`.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/predict"): "predict",
    ("POST", "/feedback"): "feedback",
    ("GET", "/metrics"): "read",
    ("GET", "/docs.json"): "read",
    ("GET", "/"): "read",
    ("GET", "/status"): "read",
}

_live: Callable[[], Any] = lambda: None  # noqa: E731  (bound by the service: the live routing of this worker)
_gates: dict[str, Gate] = {}


def bind(live: Callable[[], Any]) -> None:
    global _live
    _live = live


def action_of(method: str, path: str) -> str | None:
    """The action a request needs, or None for the health endpoints."""
    if path in OPEN_PATHS:
        return None
    return ROUTES.get((method, path), "read")


def gate_for(settings: dict[str, Any], service: str) -> Gate:
    digest = settings.get("digest", "")
    gate = _gates.get(digest)
    if gate is None:
        _gates.clear()  # one policy live at a time
        gate = _gates[digest] = Gate.from_settings(settings)
        gate.warm([("services", action, service) for action in sorted(set(ROUTES.values()))])
    return gate


class AccessMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        live = _live()
        settings = (live.settings.get("access") if live is not None else None) or None
        if settings is None:  # no policy: nothing to check
            return await self.app(scope, receive, send)
        action = action_of(scope["method"], scope.get("specd.raw_path") or scope["path"])
        if action is None:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        key_header = ((live.settings.get("auth") or {}).get("header") or "X-API-Key").lower()
        decision = gate_for(settings, live.routing.service).check(headers, "services", action, live.routing.service, key_header=key_header)
        if decision.status == 200:
            return await self.app(scope, receive, send)
        body = json.dumps({"error": decision.message, "status": decision.status}).encode()
        extra = [(b"www-authenticate", b'Bearer realm="specd"')] if decision.status == 401 else []
        await send({"type": "http.response.start", "status": decision.status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})
