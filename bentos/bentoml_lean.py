"""BentoML's per-request bookkeeping without its per-request overheads (same metrics, headers, routing).

Why: profiled under `wrk`, a request to the A/B service spent about a third of its CPU in BentoML's
layers around our API rather than in routing, validation or the model. Most of it was set-up work
repeated on every request, which these replacements do once:

1. `RunnerTrafficMetricsMiddleware` (the built-in `bentoml_service_request_*` metrics) looked up five
   labelled children per request (`labels()` hashes and validates every label each time) and wrapped
   `receive` for websocket counters an HTTP request never needs. Here the children are bound once per
   (endpoint, code, service name, version) and reused, and their updates are summed in memory and
   written 4× a second (`metric_buffer`): the samples are the same, at most 0.25 s later. Paths that are not
   routes of the service are labelled `unknown` (`bentoml_fixes.endpoint_label`) while the app still
   sees the real path. Websockets and lifespan go through BentoML's own code.
2. `ServiceAppFactory._add_response_headers` is `@inject`-decorated: `inspect.Signature.bind_partial`
   on every response to fill in a setting that never changes. It is read once.
3. `OpenTelemetryMiddleware` parsed the URL and ran the exclusion regex per request for paths that are
   never traced (`bentoml_fixes.serving_config`); those paths now skip it by an exact set lookup.
4. `ServiceAppFactory.api_endpoint` builds a serde and inspects the API function per request. For APIs
   whose input spec passes the raw request through (`api_schema.RawRequestInput`), async and not
   batchable, nothing of that is used: the API is awaited with the request directly. Everything else
   (the pickle refusal of the main server included) is BentoML's own path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from bentoml._internal.context import server_context

from bentos import metric_buffer

Scope = dict[str, Any]
_untraced: frozenset[str] = frozenset()
_applied = False


def set_untraced(paths: Iterable[str]) -> None:
    """Request paths that get no tracing span (exact match)."""
    global _untraced
    _untraced = frozenset(paths)


class _Children:
    """The labelled metric children of one middleware, bound on first use. One service identity at a
    time: a routing swap changes the version label, and the old children are dropped from the cache."""

    def __init__(self, middleware: Any) -> None:
        self.middleware = middleware
        self.identity: tuple[str, str, str] | None = None
        self.per_endpoint: dict[str, tuple[Any, Any | None]] = {}
        self.per_code: dict[tuple[str, int], tuple[Any, Any]] = {}

    def _current(self) -> tuple[str, str, str]:
        identity = (server_context.bento_name, server_context.bento_version, server_context.service_name)
        if identity != self.identity:
            self.identity, self.per_endpoint, self.per_code = identity, {}, {}
        return identity

    def endpoint(self, endpoint: str) -> tuple[Any, Any | None]:
        """(in-progress gauge, last-request-timestamp gauge or None for skipped paths)."""
        name, version, runner = self._current()
        bound = self.per_endpoint.get(endpoint)
        if bound is None:
            m = self.middleware
            in_progress = m.metrics_request_in_progress.labels(endpoint=endpoint, service_name=name, service_version=version,
                                                               runner_name=runner)
            last = None if endpoint.startswith(tuple(m.skip_paths)) else m.metrics_last_request_timestamp.labels(
                service_name=name, service_version=version, runner_name=runner)
            bound = self.per_endpoint[endpoint] = (metric_buffer.buffered(in_progress), last and metric_buffer.buffered(last))
        return bound

    def code(self, endpoint: str, status: int) -> tuple[Any, Any]:
        """(request counter, duration histogram) of one endpoint and HTTP status."""
        key = (endpoint, status)
        bound = self.per_code.get(key)
        if bound is None:
            name, version, runner = self.identity or self._current()
            m = self.middleware
            labels = {"endpoint": endpoint, "service_name": name, "service_version": version,
                      "http_response_code": status, "runner_name": runner}
            bound = self.per_code[key] = (metric_buffer.buffered(m.metrics_request_total.labels(**labels)),
                                          metric_buffer.buffered(m.metrics_request_duration.labels(**labels)))
        return bound


def _lean_metrics_call(original: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    from timeit import default_timer

    from bentos.bentoml_fixes import endpoint_label

    async def call(self: Any, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            path = scope.get("path")
            if isinstance(path, str) and scope["type"] == "websocket" and endpoint_label(path) != path:
                scope = {**scope, "path": endpoint_label(path)}  # no series per made-up websocket path
            return await original(self, scope, receive, send)
        if not self._is_setup:
            self._setup()
        path = scope["path"]
        metric_buffer.ensure_flushing()
        if path == "/metrics":
            metric_buffer.flush()  # this worker's latest counts in this scrape
            return await self.app(scope, receive, send)
        children = self.__dict__.get("_specd_children")
        if children is None:
            children = self._specd_children = _Children(self)
        endpoint = endpoint_label(path)
        in_progress, last = children.endpoint(endpoint)
        if last is not None:
            last.set_to_current_time()
        started = default_timer()
        status = 0

        async def wrapped_send(message: dict[str, Any]) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body" and not message.get("more_body"):
                total, duration = children.code(endpoint, status)
                total.inc()
                duration.observe(max(default_timer() - started, 0))
            await send(message)

        in_progress.inc()
        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            in_progress.dec()

    call.specd_patched = True  # type: ignore[attr-defined]
    return call


def _headers_once(original: Callable[..., None]) -> Callable[..., None]:
    settings: dict[str, Any] = {}

    def add_response_headers(self: Any, resp: Any) -> None:
        from bentoml._internal.container import BentoMLContainer
        from bentoml._internal.context import trace_context

        if not settings:
            settings["format"] = BentoMLContainer.logging_formatting.get()
            settings["trace_id"] = bool(BentoMLContainer.http.response.trace_id.get())
        server = settings.get(self.service.name)
        if server is None:
            server = settings[self.service.name] = (b"server", f"BentoML Service/{self.service.name}".encode("latin-1"))
        raw = resp.raw_headers
        if any(name == b"server" for name, _ in raw):
            resp.headers["Server"] = server[1].decode("latin-1")  # replaces the response's own
        else:
            raw.append(server)
        if trace_context.request_id is not None:
            resp.headers["X-BentoML-Request-ID"] = format(trace_context.request_id, settings["format"]["span_id"])
        if settings["trace_id"] and trace_context.trace_id is not None:
            resp.headers["X-BentoML-Trace-ID"] = format(trace_context.trace_id, settings["format"]["trace_id"])

    add_response_headers.specd_patched = True  # type: ignore[attr-defined]
    add_response_headers.specd_original = original  # type: ignore[attr-defined]
    return add_response_headers


def _untraced_call(original: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    async def call(self: Any, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("path") in _untraced and scope["type"] == "http":
            return await self.app(scope, receive, send)
        return await original(self, scope, receive, send)

    call.specd_patched = True  # type: ignore[attr-defined]
    return call


def _direct_endpoint(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    import inspect

    from starlette.responses import Response

    direct: dict[tuple[int, str], bool] = {}

    def is_direct(factory: Any, name: str, method: Any) -> bool:
        key = (id(factory), name)
        known = direct.get(key)
        if known is None:
            from bentoml._internal.utils import get_original_func

            func = getattr(factory._service_instance, name).local
            known = direct[key] = (getattr(method.input_spec, "specd_raw_request", False) and not method.batchable
                                   and method.ctx_param is None and inspect.iscoroutinefunction(get_original_func(func)))
        return known

    async def api_endpoint(self: Any, name: str, request: Any) -> Any:
        method = self.service.apis[name]
        if not is_direct(self, name, method):
            return await original(self, name, request)
        if self.is_main:
            media_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
            if media_type == "application/vnd.bentoml+pickle":
                return await original(self, name, request)  # BentoML refuses it (kept as its own answer)
        output = await getattr(self._service_instance, name).local(request)
        if isinstance(output, Response):
            return output
        from _bentoml_impl.serde import ALL_SERDE

        return await method.output_spec.to_http_response(output, ALL_SERDE["application/json"]())

    api_endpoint.specd_patched = True  # type: ignore[attr-defined]
    return api_endpoint


def apply() -> None:
    """Install the four replacements (idempotent); fail at start-up if BentoML changed shape."""
    global _applied
    if _applied:
        return
    from _bentoml_impl.server.app import ServiceAppFactory
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    for cls, attrs in ((ServiceAppFactory, ("_add_response_headers", "api_endpoint")),
                       (RunnerTrafficMetricsMiddleware, ("_setup", "__call__")), (OpenTelemetryMiddleware, ("__call__",))):
        missing = [name for name in attrs if not hasattr(cls, name)]
        if missing:
            raise RuntimeError(f"BentoML changed {cls.__name__} (no {missing}); review bentos/bentoml_lean.py")
    if not getattr(RunnerTrafficMetricsMiddleware.__call__, "specd_patched", False):
        RunnerTrafficMetricsMiddleware.__call__ = _lean_metrics_call(RunnerTrafficMetricsMiddleware.__call__)  # type: ignore[method-assign]
    if not getattr(ServiceAppFactory._add_response_headers, "specd_patched", False):
        ServiceAppFactory._add_response_headers = _headers_once(ServiceAppFactory._add_response_headers)  # type: ignore[method-assign]
    if not getattr(ServiceAppFactory.api_endpoint, "specd_patched", False):
        ServiceAppFactory.api_endpoint = _direct_endpoint(ServiceAppFactory.api_endpoint)  # type: ignore[method-assign]
    if not getattr(OpenTelemetryMiddleware.__call__, "specd_patched", False):
        OpenTelemetryMiddleware.__call__ = _untraced_call(OpenTelemetryMiddleware.__call__)  # type: ignore[method-assign]
    _applied = True
