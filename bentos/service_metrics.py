"""The `specd_service_*` metrics of daemon/CONTRACTS.md, created inside the service's `__init__`.

BentoML points prometheus_client at its multiprocess directory only after our module is imported, so
`prometheus_client` is imported here, at construction time. Each worker process writes its own samples;
BentoML's `/metrics` merges them beside its built-in `bentoml_service_request_*`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PREDICTION_BUCKETS = tuple(i / 10 for i in range(11))  # probabilities; regression values land in +Inf when large
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class ServiceMetrics:
    requests: Any
    duration: Any
    prediction: Any
    batch_size: Any
    weight: Any
    dropped: Any
    feedback: Any


def create_metrics() -> ServiceMetrics:
    from prometheus_client import Counter, Gauge, Histogram

    return ServiceMetrics(
        requests=Counter("specd_service_requests", "Prediction requests by variant and HTTP code.", ["service", "variant", "code"]),
        duration=Histogram("specd_service_request_duration_seconds", "Prediction latency per variant (routing + batching + model).",
                           ["service", "variant"], buckets=LATENCY_BUCKETS),
        prediction=Histogram("specd_service_prediction", "Distribution of predicted values (probability of the positive class, or the value).",
                             ["service", "variant"], buckets=PREDICTION_BUCKETS),
        batch_size=Histogram("specd_service_batch_size", "Rows per model call.", ["service", "variant"], buckets=BATCH_BUCKETS),
        weight=Gauge("specd_service_variant_weight", "Traffic weight of each variant (0..1) in the live routing.",
                     ["service", "variant"], multiprocess_mode="livemostrecent"),
        dropped=Counter("specd_service_prediction_log_dropped", "Prediction/feedback log records dropped (queue full or write failed).", ["service"]),
        feedback=Counter("specd_service_feedback", "Ground-truth feedback records received.", ["service", "variant"]),
    )
