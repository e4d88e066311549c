"""The ceiling of the services benchmark: BentoML's HTTP stack around exactly the bare app's endpoint.

`bench_services.py` serves this next to the bare Starlette + uvicorn app: the endpoint is the bare
app's (parse the body, the predictor in a thread, a JSON answer), as one async BentoML API with the
same settings and fixes as specd's services (`bentoml_fixes`). Its throughput over the bare app's is
what BentoML's stack itself leaves reachable; the A/B service's is compared with both.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from bentos import bentoml_fixes
from bentos.api_schema import RawRequestInput

bentoml_fixes.apply()


class AnyBody(RawRequestInput):
    """Any JSON body, handed to the API as the request."""


class Answer(bentoml.IODescriptor):
    prediction: Any = None
    probability: Any = None


@bentoml.service(name="specd_trivial", workers=1, **bentoml_fixes.serving_config(["/predict"]))
class Trivial:
    def __init__(self) -> None:
        from flows.training.artifact import load_predictor

        self.predictor = load_predictor(os.environ["SPECD_MODEL_TAG"])
        bentoml_fixes.freeze_startup_objects()

    @bentoml.api(route="/predict", input_spec=AnyBody, output_spec=Answer)
    async def predict(self, request: Request) -> JSONResponse:
        features = (await request.json())["features"]
        output = await run_in_threadpool(self.predictor.predict, {name: [value] for name, value in features.items()})
        return JSONResponse({name: values[0] for name, values in output.items()})
