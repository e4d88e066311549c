"""The A/B router service: one BentoML service that serves every variant of a model by weight.

Started by the daemon's supervisor as `bentoml serve bentos.ab_service:ABService` with
`SPECD_ROUTING_FILE` pointing at the routing file the daemon owns; everything that can change without a
restart (variants, weights, sticky key, batching, API keys, logging) is read from that file by each
worker (see `live_routing`). Endpoints:

- `POST /predict`  {"features": {...}} or {"instances": [...]} (+ optional sticky key) →
  prediction(s), probability, variant, model version, request id
- `POST /feedback` {"request_id", "label", "row"?} → ground truth for `specd ab`
- `GET  /status`   this worker's routing, degradation and logging state (a small mounted app)
- BentoML's own `/readyz` (ready once a routing is live), `/livez`, `/metrics`, `/docs.json` and its
  Swagger UI at `/`.

`/predict` and `/feedback` are BentoML APIs, so they are in BentoML's OpenAPI document with schemas
generated from the live feature schema (`api_schema`) and in its built-in request metrics, labelled with
this service's name and version (the routing fingerprint). Their bodies are read with a size limit
(`request_body`) and validated by `validation`, so a bad request gets a 4xx that lists every bad field.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bentos import access, bentoml_fixes, metric_buffer, online_features
from bentos.api_schema import FeedbackRequest, FeedbackResponse, PredictResponse, predict_schemas
from bentos.batching import Arrivals, Batcher, ModelCall, predict_unbatched
from bentos.live_routing import Live, RoutingWatcher
from bentos.request_body import body_limit, closes_connection, read_body
from bentos.request_ids import RequestIds
from bentos.validation import RequestError, check_api_key, parse_body, sticky_key_of, validate_request
from bentos.worker import die_with_arbiter, model_loader, server_stack, storage_options

log = logging.getLogger("specd.service")
ROUTING_ENV = "SPECD_ROUTING_FILE"
REMEMBERED_REQUESTS = 100_000  # request id -> variant, so feedback is counted per variant
FEEDBACK_FIELDS = frozenset({"request_id", "label", "row", "variant"})

bentoml_fixes.apply()
bentoml_fixes.register_paths(["/status"])
HOT_PATHS = ("/predict", "/feedback")


def _identity_from_routing_file() -> None:
    """Name and version for BentoML's metrics before the first routing is live (import-light read)."""
    from bentos.routing import read_routing

    try:
        routing = read_routing(Path(os.environ[ROUTING_ENV]))
    except (KeyError, OSError, ValueError, TypeError):
        return
    bentoml_fixes.set_identity(routing.service, routing.fingerprint[:16])


_identity_from_routing_file()


def _service() -> ABService:
    return bentoml.get_current_service()


async def status(request: Request) -> JSONResponse:
    return JSONResponse(_service().status())


status_app = Starlette(routes=[Route("/status", status, methods=["GET"])])


@dataclass(frozen=True)
class VariantMetrics:
    """The metric children of one variant, bound once per routing swap instead of per request."""

    ok: Any
    duration: Any
    prediction: Any
    feedback: Any


class FastJSONResponse(JSONResponse):
    """Starlette's JSONResponse encoded by orjson: the same compact UTF-8 JSON, several times faster."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:  # what orjson does not encode (an int beyond 64 bits): the standard encoder
            return super().render(content)
def _error_response(exc: RequestError) -> JSONResponse:
    headers = {"Connection": "close"} if closes_connection(exc) else None
    return FastJSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


@bentoml.asgi_app(status_app, path="/")
@bentoml.service(
    name="specd_ab",
    workers=int(os.environ.get("SPECD_SERVICE_WORKERS", "1")),
    **bentoml_fixes.serving_config(HOT_PATHS),
)
class ABService:
    def __init__(self) -> None:
        from bentos.prediction_log import warm_up  # fail at start, not on the first request
        from bentos.service_metrics import create_metrics

        die_with_arbiter()
        warm_up()
        self.metrics = create_metrics()
        self.arrivals: Arrivals | None = None  # created on the event loop
        self.logs: dict[str, Any] = {}
        self._log_key: tuple | None = None
        self._recent: OrderedDict[str, str] = OrderedDict()
        self._bound: dict[str, VariantMetrics] = {}
        self._request_id = RequestIds()
        self._calls: dict[str, ModelCall] = {}  # model tag -> its calls (inline while cheap), shared with its batcher
        self._schema_key: tuple | None = None
        self.max_body = body_limit({})
        routing_file = os.environ.get(ROUTING_ENV)
        if not routing_file:
            raise RuntimeError(f"{ROUTING_ENV} is not set; the daemon's supervisor starts this service")
        self.watcher = RoutingWatcher(Path(routing_file), model_loader(), self._make_batcher, self._on_swap)
        self.watcher.start()
        access.bind(lambda: self.watcher.live)
        bentoml_fixes.freeze_startup_objects()

    # ---- lifecycle -------------------------------------------------------------------------------
    async def __is_ready__(self) -> bool:
        return self.watcher.live is not None

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.watcher.stop()
        metric_buffer.flush()
        for delta_log in self.logs.values():
            delta_log.close()

    def _make_batcher(self, variant: str, predictor: Any, settings: dict[str, Any]) -> Batcher | None:
        batching = settings.get("batching") or {}
        if not batching.get("enabled", True):
            return None
        service = settings.get("service_name", "")
        histogram = metric_buffer.buffered(self.metrics.batch_size.labels(service, variant))
        return Batcher(
            self._call_of(predictor),
            max_batch_size=int(batching.get("max_batch_size", 64)),
            max_latency_ms=float(batching.get("max_latency_ms", 50.0)),
            arrivals=self._arrivals_ref(),
            on_batch=histogram.observe,
        )

    def _call_of(self, predictor: Any) -> ModelCall:
        call = self._calls.get(predictor.tag)
        if call is None:
            call = self._calls[predictor.tag] = ModelCall(predictor.predict)
        return call

    def _arrivals_ref(self) -> Arrivals:
        if self.arrivals is None:
            self.arrivals = Arrivals()
        return self.arrivals

    def _on_swap(self, old: Live | None, new: Live) -> None:
        service = new.routing.service
        for variant in new.routing.variants:
            self.metrics.weight.labels(service, variant.name).set(variant.weight)
        if old is not None:
            for variant in old.routing.variants:
                if variant.name not in new.variants:
                    self.metrics.weight.labels(old.routing.service, variant.name).set(0)
            kept = {id(v.batcher) for v in new.variants.values()}
            for loaded in old.variants.values():
                if loaded.batcher is not None and id(loaded.batcher) not in kept:
                    loaded.batcher.retire()  # requests already queued on it still finish there
        self._bound = {name: self._bind(service, name) for name in new.variants}
        self._calls = {v.tag: self._call_of(v.predictor) for v in new.variants.values()}
        self._publish(new)
        self._configure_logs(new)

    def _bind(self, service: str, variant: str) -> VariantMetrics:
        m, b = self.metrics, metric_buffer.buffered  # summed in memory, written 4x a second
        return VariantMetrics(b(m.requests.labels(service, variant, "200")), b(m.duration.labels(service, variant)),
                              b(m.prediction.labels(service, variant)), b(m.feedback.labels(service, variant)))

    def _publish(self, live: Live) -> None:
        """What BentoML shows of this service: its name and version in the built-in metrics, and the
        request schema of the live variants in /docs.json."""
        bentoml_fixes.set_identity(live.routing.service, live.routing.fingerprint[:16])
        max_rows = int(live.settings.get("max_request_rows", 256))
        key = (tuple(sorted((n, t) for v in live.variants.values() for n, t in v.schema.items() if n in live.known_features)),
               live.routing.sticky_field, max_rows)
        if key != self._schema_key:
            features = {name: dtype for v in live.variants.values() for name, dtype in v.schema.items() if name in live.known_features}
            ABService.apis["predict"].input_spec = predict_schemas(features, sticky_field=live.routing.sticky_field,
                                                                   max_rows=max_rows).request
            self._schema_key = key
        self.max_body = body_limit(live.settings)

    def _configure_logs(self, live: Live) -> None:
        from bentos.prediction_log import FEEDBACK_COLUMNS, PREDICTION_COLUMNS, DeltaLog

        settings = live.settings.get("prediction_log") or {}
        key = (settings.get("predictions_uri"), settings.get("feedback_uri"), settings.get("queue_size"),
               settings.get("flush_interval_s"), bool(settings.get("enabled")), repr(settings.get("tls")))
        if key == self._log_key:
            return
        old_logs, self.logs, self._log_key = self.logs, {}, key
        if settings.get("enabled"):
            options = storage_options(settings)
            counter = self.metrics.dropped.labels(live.routing.service)
            for name, uri, columns in (("predictions", settings["predictions_uri"], PREDICTION_COLUMNS),
                                       ("feedback", settings["feedback_uri"], FEEDBACK_COLUMNS)):
                self.logs[name] = DeltaLog(uri, columns, queue_size=int(settings.get("queue_size", 10000)),
                                           flush_interval_s=float(settings.get("flush_interval_s", 1.0)),
                                           storage_options=options, on_drop=counter.inc)
        for delta_log in old_logs.values():
            delta_log.close(timeout=0)  # its thread flushes what it holds, then ends

    # ---- endpoints -------------------------------------------------------------------------------
    @bentoml.api(route="/predict", input_spec=predict_schemas({}).request, output_spec=PredictResponse)
    async def predict(self, request: Request) -> JSONResponse:
        """Predict one row (`features`) or a batch (`instances`) with the variant this request is routed to.

        A request with a sticky key (the service's sticky field, or `key`) always reaches the same variant.
        A bad request gets a 4xx whose `error`/`field` name the first bad field and `errors` lists them all.
        """
        return await self.handle_predict(request)

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest, output_spec=FeedbackResponse)
    async def feedback(self, request: Request) -> JSONResponse:
        """Record the ground truth of an answered request (by its `request_id`), for `specd ab`."""
        return await self.handle_feedback(request)

    def _metrics_of(self, service: str, variant: str) -> VariantMetrics:
        bound = self._bound.get(variant)
        return bound if bound is not None else self._bind(service, variant)

    async def handle_predict(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        metric_buffer.ensure_flushing()
        arrivals = self._arrivals_ref()
        arrivals.begin()
        arrived = True
        live = self.watcher.live
        service = live.routing.service if live else "unknown"
        variant_name = "none"
        try:
            if live is None:
                raise RequestError(503, "", "no routing is live yet (models loading)")
            check_api_key(request, live.settings.get("auth") or {})
            body = parse_body(await read_body(request, self.max_body))
            body = await online_features.enrich(body, live)  # features_from: fill features by entity key
            routing = live.routing
            key = sticky_key_of(body, routing.sticky_field)
            if key is None and routing.sticky_header:
                key = request.headers.get(routing.sticky_header)
            variant = routing.choose(key)
            variant_name = variant.name
            loaded = live.variants[variant.name]
            parsed = validate_request(body, loaded.schema, max_rows=int(live.settings.get("max_request_rows", 256)),
                                      sticky_field=routing.sticky_field, known=live.known_features)
            arrivals.end()
            arrived = False
            if loaded.batcher is not None:
                output = await loaded.batcher.submit(parsed.columns, parsed.rows)
            else:
                output = await predict_unbatched(self._call_of(loaded.predictor), parsed.columns)
        except RequestError as exc:
            if exc.status >= 500:
                log.warning("predict: %s", exc)
                self._log_failure(live, variant_name, time.perf_counter() - started)
            self.metrics.requests.labels(service, variant_name, str(exc.status)).inc()
            return _error_response(exc)
        except Exception:
            log.exception("prediction failed (variant %s)", variant_name)
            self.metrics.requests.labels(service, variant_name, "500").inc()
            self._log_failure(live, variant_name, time.perf_counter() - started)
            return JSONResponse({"error": "prediction failed; see the service log", "variant": variant_name}, status_code=500)
        finally:
            if arrived:
                arrivals.end()
        elapsed = time.perf_counter() - started
        request_id = self._request_id()
        self._observe(live, loaded.tag, variant_name, parsed, output, elapsed, request_id, key)
        answer: dict[str, Any] = {"request_id": request_id, "variant": variant_name, "model": live.routing.model,
                                  "model_version": loaded.tag}
        if parsed.single:
            answer["prediction"] = output["prediction"][0]
            if "probability" in output:
                answer["probability"] = output["probability"][0]
        else:
            answer["predictions"] = output["prediction"]
            if "probability" in output:
                answer["probabilities"] = output["probability"]
        return FastJSONResponse(answer, headers={"X-Request-Id": request_id, "X-Specd-Variant": variant_name})

    def _observe(self, live: Live, tag: str, variant: str, parsed: Any, output: dict[str, list], elapsed: float,
                 request_id: str, key: str | None) -> None:
        metrics = self._metrics_of(live.routing.service, variant)
        metrics.ok.inc()
        metrics.duration.observe(elapsed)
        values = output.get("probability") or output["prediction"]
        for value in values:
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics.prediction.observe(value)
            elif isinstance(value, list) and value:
                metrics.prediction.observe(max(value))  # multiclass: confidence of the predicted class
        self._recent[request_id] = variant
        if len(self._recent) > REMEMBERED_REQUESTS:
            self._recent.popitem(last=False)
        predictions_log = self.logs.get("predictions")
        if predictions_log is None:
            return
        now = datetime.now(UTC)
        probabilities = output.get("probability")
        for row in range(parsed.rows):
            probability = probabilities[row] if probabilities else None
            if isinstance(probability, list):
                probability = max(probability)
            predictions_log.record({
                "request_id": request_id, "row": row, "ts": now, "service": live.routing.service, "variant": variant,
                "model_tag": tag, "routing_fingerprint": live.routing.fingerprint, "sticky_key": key,
                "prediction": str(output["prediction"][row]), "probability": probability,
                "latency_ms": elapsed * 1000.0,
                "features": orjson.dumps({name: values[row] for name, values in parsed.columns.items()}).decode(),
            })

    def _log_failure(self, live: Live | None, variant: str, elapsed: float) -> None:
        """A server-side failure of a routed request, logged as a prediction row with a NULL prediction, so the
        online promotion's error-rate guardrail (and `specd ab`) count failures per variant in their window.
        Client errors (4xx) are the caller's, not the variant's, and are not logged."""
        predictions_log = self.logs.get("predictions")
        if live is None or predictions_log is None or variant not in live.variants:
            return
        predictions_log.record({
            "request_id": self._request_id(), "row": 0, "ts": datetime.now(UTC), "service": live.routing.service,
            "variant": variant, "model_tag": live.variants[variant].tag, "routing_fingerprint": live.routing.fingerprint,
            "sticky_key": None, "prediction": None, "probability": None, "latency_ms": elapsed * 1000.0, "features": None,
        })

    async def handle_feedback(self, request: Request) -> JSONResponse:
        metric_buffer.ensure_flushing()
        live = self.watcher.live
        service = live.routing.service if live else "unknown"
        try:
            if live is not None:
                check_api_key(request, live.settings.get("auth") or {})
            body = parse_body(await read_body(request, self.max_body))
            unknown = sorted(set(body) - FEEDBACK_FIELDS)
            if unknown:
                raise RequestError(400, unknown[0], "unknown field; expected request_id, label, row, variant")
            request_id = body.get("request_id")
            if not isinstance(request_id, str) or not request_id:
                raise RequestError(400, "request_id", "required: the request_id a /predict answer returned")
            if "label" not in body or body["label"] is None or isinstance(body["label"], dict | list):
                raise RequestError(400, "label", "required: the observed ground truth (a string or a number)")
            row = body.get("row", 0)
            if isinstance(row, bool) or not isinstance(row, int) or row < 0:
                raise RequestError(400, "row", "must be a non-negative integer (the row of an `instances` request)")
            variant = self._recent.get(request_id) or body.get("variant") or "unknown"
            if not isinstance(variant, str):
                raise RequestError(400, "variant", "must be a string")
        except RequestError as exc:
            return _error_response(exc)
        # a client-sent variant name is logged as sent, but only a live variant gets a metric series
        label_variant = variant if live is not None and variant in live.variants else "unknown"
        self._metrics_of(service, label_variant).feedback.inc()
        feedback_log = self.logs.get("feedback")
        label = body["label"]
        if isinstance(label, float) and label.is_integer():
            label = int(label)  # 1.0 and 1 are the same class
        accepted = feedback_log.record({"request_id": request_id, "row": row, "ts": datetime.now(UTC), "service": service,
                                        "variant": variant, "label": str(label)}) if feedback_log else False
        return FastJSONResponse({"accepted": accepted, "request_id": request_id, "variant": variant}, status_code=202)

    def status(self) -> dict[str, Any]:
        out = self.watcher.status()
        out["prediction_log"] = {name: {"uri": lg.uri, "written": lg.written, "dropped": lg.dropped, "last_error": lg.last_error}
                                 for name, lg in self.logs.items()}
        out["server"] = server_stack()
        return out


ABService.add_asgi_middleware(access.AccessMiddleware)  # the access policy (bentos/access.py), before every route
