"""Baseline for the benchmark: the plainest BentoML service of one model (no routing, no logging).

`tests/bench/bench_services.py` measures the A/B router against this in the same run: same model,
same request body, same worker count — the difference is what routing, validation, metrics and
prediction logging cost. So it runs on the same BentoML settings and fixes (`bentoml_fixes`): without
them its p99 is BentoML's garbage-collection pauses, not the cost of serving. The model tag comes from
`SPECD_MODEL_TAG`; in a containerized bento the model is the bento's own ($BENTO_PATH/models, as for the
A/B service: `worker.model_loader`).
"""

from __future__ import annotations

import os
from typing import Any

import bentoml

from bentos import bentoml_fixes
from bentos.worker import model_loader

bentoml_fixes.apply()


@bentoml.service(name="specd_single", workers=int(os.environ.get("SPECD_SERVICE_WORKERS", "1")),
                 **bentoml_fixes.serving_config(["/predict"]))
class SingleModel:
    def __init__(self) -> None:
        self.predictor = model_loader()(os.environ["SPECD_MODEL_TAG"])
        bentoml_fixes.freeze_startup_objects()

    @bentoml.api
    def predict(self, features: dict[str, Any]) -> dict[str, Any]:
        output = self.predictor.predict({name: [value] for name, value in features.items()})
        return {name: values[0] for name, values in output.items()}
