"""Request and response schemas of `/predict` and `/feedback`, generated from the live feature schema.

Why generated at run time: the fields are the model's (`Predictor.feature_schema`), and a routing swap can
serve a model with other features without a restart. BentoML renders `/docs.json` (and so its Swagger UI)
from each API's `input_spec`/`output_spec` on every request, so the service assigns freshly generated
pydantic models on each swap: the docs always list the fields the live variants accept, with an example
body that "Try it out" can send as is.

Parsing stays ours: the input specs' `from_http_request` hands the API the Starlette request itself, and
the service reads it with a size limit and validates it with `bentos.validation`, whose 4xx answers list
every bad field, the first one in `error`/`field` — pydantic's messages are not as clear, and it knows
neither the row limit nor the union of features that several variants need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from bentoml import IODescriptor
from pydantic import BaseModel, ConfigDict, Field, create_model

PYTHON_TYPES: dict[str, type] = {"float64": float, "int64": int, "string": str}
EXAMPLE_VALUES: dict[str, Any] = {"float64": 0.0, "int64": 0, "string": ""}


class RawRequestInput(IODescriptor):
    """An input spec that documents a schema but passes the raw request on (the service validates)."""

    __root_input__: ClassVar[bool] = True
    specd_raw_request: ClassVar[bool] = True  # bentoml_lean: the API is awaited with the request directly

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> Any:  # type: ignore[override]
        return request


class PredictResponse(IODescriptor):
    request_id: str = Field(description="Send it back with /feedback")
    variant: str = Field(description="The variant that answered (champion, challenger, ...)")
    model: str
    model_version: str = Field(description="Model-store tag of the variant's model")
    prediction: float | int | str | None = Field(default=None, description="One-row request (`features`)")
    probability: float | list[float] | None = Field(default=None, description="Classification: P(positive class), or per class")
    predictions: list[Any] | None = Field(default=None, description="Batch request (`instances`): one per row")
    probabilities: list[Any] | None = Field(default=None, description="Batch request: one per row")


class FeedbackRequest(RawRequestInput):
    model_config = ConfigDict(json_schema_extra={"example": {"request_id": "<request_id of a /predict answer>", "label": 1}})

    request_id: str = Field(description="The request_id a /predict answer returned")
    label: str | float | int = Field(description="The observed ground truth")
    row: int = Field(default=0, ge=0, description="Row of an `instances` request")
    variant: str | None = Field(default=None, description="Only needed once the service forgot the request id")


class FeedbackResponse(IODescriptor):
    accepted: bool = Field(description="False when feedback logging is off or its queue is full")
    request_id: str
    variant: str


@dataclass(frozen=True)
class PredictSchemas:
    request: type[RawRequestInput]
    features: type[BaseModel]


def predict_schemas(features: Mapping[str, str], *, sticky_field: str | None = None, max_rows: int = 256) -> PredictSchemas:
    """Pydantic models of a /predict body for this feature schema (every feature nullable: null = missing)."""
    feature_fields: dict[str, Any] = {
        name: (PYTHON_TYPES.get(dtype, Any) | None, Field(description=f"{dtype}; null for a missing value"))
        for name, dtype in features.items()
    }
    feature_model = create_model("Features", __config__=ConfigDict(extra="forbid"), **feature_fields)
    example = {"features": {name: EXAMPLE_VALUES.get(dtype) for name, dtype in features.items()}}
    body_fields: dict[str, Any] = {
        "features": (feature_model | None, Field(default=None, description="One row; send this or `instances`")),
        "instances": (list[feature_model] | None, Field(default=None, max_length=max_rows, description="A batch of rows")),  # type: ignore[valid-type]
        "key": (str | None, Field(default=None, description="Sticky routing key: the same key reaches the same variant")),
    }
    if sticky_field and sticky_field not in body_fields:
        body_fields[sticky_field] = (str | None, Field(default=None, description="Sticky routing key of this service"))
    base = type("PredictRequestBase", (RawRequestInput,), {"model_config": ConfigDict(json_schema_extra={"example": example})})
    request = create_model("PredictRequest", __base__=base, **body_fields)
    return PredictSchemas(request, feature_model)  # type: ignore[arg-type]
