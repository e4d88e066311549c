"""Three fixes to BentoML 1.4's HTTP serving that a long-running, high-rate service needs.

1. `TimeoutMiddleware` schedules a `loop.call_later(timeout, ...)` per request and never cancels it. The
   timer handle keeps the request's waiter future and its contextvars snapshot (with the request's
   OpenTelemetry span) alive for the whole `traffic.timeout` (60 s): at 500 req/s that is ~30 000
   requests' worth of objects, and every full garbage collection walks them — measured 150-550 ms pauses
   every 2-5 s in the A/B service and in a plain single-model BentoML service, i.e. the p99 at one
   connection. The replacement keeps the semantics (504 when no response has started within the
   timeout; no limit once it has): a request is entered in a table of deadlines that one periodic sweep
   checks (at most `timeout / 4`, and 1 s, late), so a finished request leaves nothing behind and costs
   no timer of its own.
2. `RunnerTrafficMetricsMiddleware` labels `bentoml_service_request_*` with the raw request path, so any
   client can create new metric series (`GET /x1`, `/x2`, ...) until Prometheus chokes. Paths that are
   not routes of the service are labelled `unknown` instead (static files of the docs UI by their prefix).
   Its `service_name`/`service_version` labels are BentoML's class name and "not available" outside a
   bento; `set_identity` puts the specd service's name and version there, from the first series on.
3. Every API request looks its method up with `APIMethod.__get__`, which builds a new wrapper with
   `inspect.signature` each time: ~150 us per request measured on the CI machine, about as much as the
   model call. The wrapper depends only on the method, the service instance and its self-proxy (which
   a serving worker always sets; an earlier version of this fix skipped such instances, so it never
   applied in a real worker), so it is built once per instance and proxy.

`apply()` patches the classes in place (idempotent) and fails at start-up if BentoML changed shape, so a
BentoML upgrade cannot silently drop a fix. pyproject pins bentoml to 1.4.x. `bentoml_lean` (applied with
these) removes the rest of BentoML's per-request set-up costs; its metrics middleware does fix 2's labelling.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bentos import bentoml_lean

UNKNOWN_ENDPOINT = "unknown"
INFRA_PATHS = frozenset({"/", "/livez", "/healthz", "/readyz", "/metrics", "/docs.json", "/schema.json"})
STATIC_PREFIXES = ("/static_content/", "/assets/")

Scope = dict[str, Any]
_extra_paths: set[str] = set()
_identity: tuple[str, str] | None = None
_applied = False


def set_identity(name: str, version: str) -> None:
    """Label BentoML's built-in metrics with this service's name and version (now and at their set-up)."""
    from bentoml._internal.context import server_context

    global _identity
    _identity = (name, version)
    server_context.bento_name, server_context.bento_version = name, version


def _identified(original: Callable[..., None]) -> Callable[..., None]:
    def setup(self: Any, *args: Any, **kwargs: Any) -> None:
        if _identity is not None:  # BentoML's worker sets its own after importing the service module
            set_identity(*_identity)
        original(self, *args, **kwargs)

    setup.specd_patched = True  # type: ignore[attr-defined]
    return setup


def serving_config(hot_paths: Iterable[str], environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """`@bentoml.service` settings of specd's services: a 60 s request timeout; no access log line per
    request (~10 % of a worker's CPU; requests are counted in metrics) unless SPECD_ACCESS_LOG=1; no
    tracing span on the hot paths — BentoML records one per request even without an exporter, ~20 % of
    a worker's CPU — unless SPECD_TRACE_REQUESTS=1 (with a tracing exporter configured)."""
    traced = environ.get("SPECD_TRACE_REQUESTS", "") == "1"
    hot_paths = list(hot_paths)
    bentoml_lean.set_untraced([] if traced else hot_paths)
    config: dict[str, Any] = {
        "traffic": {"timeout": 60},
        "logging": {"access": {"enabled": environ.get("SPECD_ACCESS_LOG", "") == "1"}},
        "tracing": {"excluded_urls": [] if traced else [f"{path}$" for path in hot_paths]},
    }
    ssl = ssl_config(environ)
    if ssl:
        config["ssl"] = ssl
        enforce_min_tls_version(environ.get("SPECD_TLS_MIN_VERSION") or "TLSv1.2")
    return config


def enforce_min_tls_version(version: str) -> None:
    """uvicorn builds the worker's SSLContext without a protocol floor (its `--ssl-version` picks a
    protocol constant) and BentoML exposes none: wrap its context factory so every context refuses
    anything below `tls.min_version`. The worker imports the service before it builds the context."""
    import ssl

    import uvicorn.config

    floor = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}[version]
    original = getattr(uvicorn.config.create_ssl_context, "__wrapped__", uvicorn.config.create_ssl_context)

    def create_ssl_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = original(*args, **kwargs)
        context.minimum_version = floor
        return context

    create_ssl_context.__wrapped__ = original  # type: ignore[attr-defined]
    uvicorn.config.create_ssl_context = create_ssl_context


def ssl_config(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """BentoML's `ssl` service config from the supervisor's SPECD_TLS_* variables (daemon/shared/tls.py):
    HTTPS only, and client certificates required when SPECD_TLS_CERT_REQS says so (mTLS)."""
    certfile, keyfile = environ.get("SPECD_TLS_CERTFILE"), environ.get("SPECD_TLS_KEYFILE")
    if not certfile or not keyfile:
        return {}
    config: dict[str, Any] = {"enabled": True, "certfile": certfile, "keyfile": keyfile}
    if environ.get("SPECD_TLS_CA_CERTS"):
        config["ca_certs"] = environ["SPECD_TLS_CA_CERTS"]
        config["cert_reqs"] = int(environ.get("SPECD_TLS_CERT_REQS") or 2)
    return config


GC_THRESHOLDS = (20_000, 20, 100)


def freeze_startup_objects() -> None:
    """Keep the garbage collector out of the request tail.

    Modules, models and BentoML's app are loaded for good: frozen, no later full collection walks them
    (one walking the ~200 000 objects of a loaded worker took ~100 ms). Requests create few reference
    cycles, so collections can be rarer: with CPython's default thresholds a worker at one connection
    still ran a full collection every ~3 000 requests (14-80 ms each, depending on the machine's load);
    with these, none in 6 000 requests and no young-generation collection over 5 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def register_paths(paths: Iterable[str]) -> None:
    """Routes served outside BentoML's API table (a mounted app's `/status`) keep their own label."""
    _extra_paths.update(paths)


def endpoint_label(path: str) -> str:
    """The `endpoint` label of a request path: a known route, a static prefix, or `unknown`."""
    from bentoml._internal.context import server_context

    if path in INFRA_PATHS or path in _extra_paths or path in server_context.service_routes:
        return path
    for prefix in STATIC_PREFIXES:
        if path.startswith(prefix):
            return prefix
    return UNKNOWN_ENDPOINT


class _Deadlines:
    """The in-flight HTTP requests of one timeout middleware on one event loop, and when each must have
    begun its response. One sweep every `interval` cancels the late ones: a request costs a dict insert
    and delete, not a timer in the loop's heap (scheduled and cancelled per request, ~4 % of a request)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop, self.timeout = loop, timeout
        self.interval = min(1.0, max(timeout / 4, 0.001))
        self.pending: dict[asyncio.Task, float] = {}
        self.expired: set[asyncio.Task] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, task: asyncio.Task) -> None:
        self.pending[task] = self.loop.time() + self.timeout
        if self._handle is None:
            self._handle = self.loop.call_later(self.interval, self._sweep, context=contextvars.Context())

    def _sweep(self) -> None:
        now = self.loop.time()
        late = [task for task, deadline in self.pending.items() if deadline <= now]
        for task in late:
            del self.pending[task]
            self.expired.add(task)
            task.cancel()  # delivered at the task's next step: no response can start before it
        # an empty context: a handle scheduled from a request would keep that request's context alive
        self._handle = self.loop.call_later(self.interval, self._sweep, context=contextvars.Context()) if self.pending else None


def _deadlines(middleware: Any) -> _Deadlines:
    loop = asyncio.get_running_loop()
    deadlines = middleware.__dict__.get("_specd_deadlines")
    if deadlines is None or deadlines.loop is not loop:
        deadlines = middleware._specd_deadlines = _Deadlines(loop, middleware.timeout)
    return deadlines


async def _timeout_call(self: Any, scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        return await _timeout_websocket(self, scope, receive, send)
    if scope["type"] != "http":
        return await self.app(scope, receive, send)
    task = asyncio.current_task()
    deadlines = _deadlines(self)
    deadlines.add(task)
    started = False

    async def _send(message: dict[str, Any]) -> None:
        nonlocal started
        if not started:
            started = True
            deadlines.pending.pop(task, None)  # the response has begun: no time limit for the rest
        await send(message)

    try:
        await self.app(scope, receive, _send)
    except asyncio.CancelledError:
        if task not in deadlines.expired or started:
            raise  # the client went away, or the server is stopping
        deadlines.expired.discard(task)
        task.uncancel()
        from starlette.responses import JSONResponse

        response = JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"}, status_code=504)
        await response(scope, receive, send)
    finally:
        deadlines.pending.pop(task, None)
        deadlines.expired.discard(task)


async def _timeout_websocket(self: Any, scope: Scope, receive: Any, send: Any) -> None:
    deadline = asyncio.timeout(self.timeout)

    async def _send(message: dict[str, Any]) -> None:
        deadline.reschedule(None)  # the connection has begun: no time limit for the rest
        await send(message)

    async with deadline:
        await self.app(scope, receive, _send)


def _cached_get(original: Callable[..., Any]) -> Callable[..., Any]:
    def get(self: Any, instance: Any, owner: type) -> Any:
        if instance is None:
            return original(self, instance, owner)
        proxy = getattr(instance, "__self_proxy__", None)  # a serving worker's instance always has one
        callers = instance.__dict__.setdefault("_specd_api_callers", {})
        entry = callers.get(self.name)
        if entry is None or entry[0] is not proxy:
            entry = callers[self.name] = (proxy, original(self, instance, owner))
        return entry[1]

    get.specd_patched = True  # type: ignore[attr-defined]
    return get


def apply() -> None:
    global _applied
    if _applied:
        return
    from _bentoml_sdk.method import APIMethod
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    for cls, attrs in ((TimeoutMiddleware, ("_set_timer_out", "__call__")), (RunnerTrafficMetricsMiddleware, ("_setup", "__call__")),
                       (APIMethod, ("__get__", "_local_call"))):
        missing = [name for name in attrs if not hasattr(cls, name)]
        if missing:
            raise RuntimeError(f"BentoML changed {cls.__name__} (no {missing}); review bentos/bentoml_fixes.py")
    TimeoutMiddleware.__call__ = _timeout_call  # type: ignore[method-assign]
    if not getattr(RunnerTrafficMetricsMiddleware._setup, "specd_patched", False):
        RunnerTrafficMetricsMiddleware._setup = _identified(RunnerTrafficMetricsMiddleware._setup)  # type: ignore[method-assign]
    bentoml_lean.apply()  # its metrics middleware labels paths with `endpoint_label` (fix 2)
    if not getattr(APIMethod.__get__, "specd_patched", False):
        APIMethod.__get__ = _cached_get(APIMethod.__get__)  # type: ignore[method-assign]
    _applied = True
