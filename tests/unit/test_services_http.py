"""The service's HTTP edge without a server: BentoML fixes, body limit, generated API schemas."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import weakref

import pytest
from starlette.requests import Request

from bentos import bentoml_fixes
from bentos.api_schema import FeedbackRequest, predict_schemas
from bentos.request_body import DEFAULT_LIMIT, LIMIT_ENV, body_limit, closes_connection, read_body
from bentos.validation import RequestError, validate_request

FEATURES = {"bill_length_mm": "float64", "year": "int64", "island": "string"}
request_marker: contextvars.ContextVar[object] = contextvars.ContextVar("request_marker")


class Marker:
    pass


def _timeout_middleware(app, timeout: float):
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    bentoml_fixes.apply()
    return TimeoutMiddleware(app, timeout=timeout)


async def _call(app, path: str = "/predict") -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "path": path, "method": "POST", "headers": []}, receive, send)
    return sent


async def _ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_timeout_middleware_keeps_nothing_of_a_finished_request():
    """BentoML's own version left a 60 s timer per request that held the request's context (with its
    tracing span, set by a middleware further out) alive: 400 requests, 400 contexts kept."""
    markers: list[weakref.ref] = []

    async def request(middleware):
        marker = Marker()
        request_marker.set(marker)
        markers.append(weakref.ref(marker))
        await _call(middleware)

    async def main():
        middleware = _timeout_middleware(_ok_app, timeout=60)
        for _ in range(400):
            await asyncio.create_task(request(middleware))  # a task per request, as uvicorn runs them
        await asyncio.sleep(0)
        gc.collect()
        return sum(1 for ref in markers if ref() is not None)

    assert asyncio.run(main()) == 0


def test_timeout_middleware_still_answers_504_only_before_the_response_starts():
    async def slow(scope, receive, send):
        await asyncio.sleep(1)

    async def streaming(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.1)  # longer than the timeout, but the response has begun
        await send({"type": "http.response.body", "body": b"late"})

    async def own_timeout(scope, receive, send):
        raise TimeoutError("the app's own")

    async def main():
        timed_out = await _call(_timeout_middleware(slow, timeout=0.05))
        finished = await _call(_timeout_middleware(streaming, timeout=0.05))
        with pytest.raises(TimeoutError, match="the app's own"):
            await _call(_timeout_middleware(own_timeout, timeout=5))
        return timed_out, finished

    timed_out, finished = asyncio.run(main())
    assert timed_out[0]["status"] == 504 and b"0.05 seconds" in timed_out[1]["body"]
    assert finished[0]["status"] == 200 and finished[-1]["body"] == b"late"


def test_unknown_paths_get_one_endpoint_label():
    from bentoml._internal.context import server_context

    server_context.service_routes = ["/predict", "/feedback"]
    bentoml_fixes.register_paths(["/status"])
    assert [bentoml_fixes.endpoint_label(p) for p in ("/predict", "/status", "/metrics", "/docs.json")] == \
        ["/predict", "/status", "/metrics", "/docs.json"]
    assert bentoml_fixes.endpoint_label("/static_content/swagger-ui.css") == "/static_content/"
    assert {bentoml_fixes.endpoint_label(p) for p in ("/x1", "/predict/1", "/../etc", "")} == {"unknown"}


def test_metrics_middleware_labels_unknown_paths_but_routes_the_real_one():
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    bentoml_fixes.apply()
    seen: list[str] = []

    async def app(scope, receive, send):
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = RunnerTrafficMetricsMiddleware(app, namespace="specd_test")
    asyncio.run(_call(middleware, "/no-such-path-1"))
    asyncio.run(_call(middleware, "/no-such-path-2"))
    assert seen == ["/no-such-path-1", "/no-such-path-2"]  # the app still sees the real path
    samples = [s for metric in middleware.metrics_request_total.collect() for s in metric.samples]
    labels = {s.labels["endpoint"] for s in samples}
    assert "unknown" in labels and not any("no-such-path" in v for v in labels), labels


def test_body_limit_comes_from_settings_then_environment_then_default():
    assert body_limit({}, {}) == DEFAULT_LIMIT == 1 << 20
    assert body_limit({}, {LIMIT_ENV: "2048"}) == 2048
    assert body_limit({"max_request_bytes": 4096}, {LIMIT_ENV: "2048"}) == 4096
    assert body_limit({}, {LIMIT_ENV: "lots"}) == DEFAULT_LIMIT and body_limit({}, {LIMIT_ENV: "-1"}) == DEFAULT_LIMIT


def _request(chunks: list[bytes], headers: dict[str, str]) -> Request:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return messages.pop(0)

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/predict", "headers": raw}, receive)


@pytest.mark.parametrize(
    ("chunks", "headers", "status", "fragment"),
    [
        ([b"x" * 10], {"Content-Length": "5000"}, 413, "5000 bytes exceeds the limit of 100 bytes"),
        ([b"x" * 60, b"x" * 60], {}, 413, "at least 120 bytes exceeds the limit of 100 bytes"),
        ([b"{}"], {"Content-Length": "two"}, 400, "not a number"),
    ],
)
def test_oversized_or_lying_bodies_are_refused(chunks, headers, status, fragment):
    with pytest.raises(RequestError) as info:
        asyncio.run(read_body(_request(chunks, headers), limit=100))
    assert info.value.status == status and fragment in info.value.message
    assert closes_connection(info.value) == (status == 413)


def test_body_within_the_limit_is_read_whole():
    assert asyncio.run(read_body(_request([b'{"a":', b" 1}"], {}), limit=100)) == b'{"a": 1}'


def test_predict_schema_lists_the_features_and_its_example_is_a_valid_request():
    schemas = predict_schemas(FEATURES, sticky_field="user_id", max_rows=8)
    schema = schemas.request.model_json_schema()
    assert {"features", "instances", "key", "user_id"} == set(schema["properties"])
    assert schema["properties"]["instances"]["anyOf"][0]["maxItems"] == 8
    features = schema["$defs"]["Features"]["properties"]
    assert [features[n]["anyOf"][0]["type"] for n in FEATURES] == ["number", "integer", "string"]
    parsed = validate_request(schema["example"], FEATURES, max_rows=8, sticky_field="user_id")
    assert parsed.rows == 1 and set(parsed.columns) == set(FEATURES)
    assert json.loads(schemas.features.model_validate({"bill_length_mm": None, "year": 1, "island": "x"}).model_dump_json())


def test_raw_request_inputs_hand_the_request_through():
    sentinel = object()
    for spec in (predict_schemas(FEATURES).request, FeedbackRequest):
        assert spec.__root_input__ is True
        assert asyncio.run(spec.from_http_request(sentinel, None)) is sentinel


def test_api_method_lookup_is_built_once_per_instance():
    import bentoml

    bentoml_fixes.apply()

    @bentoml.service(name="specd_lookup_test")
    class Echo:
        @bentoml.api
        def echo(self, text: str) -> str:
            return text * 2

    instance = Echo.inner()
    first = instance.echo.local
    assert instance.echo.local is first  # BentoML built a new wrapper (inspect.signature) on every request
    assert first("ab") == "abab" and Echo.inner().echo.local is not first
