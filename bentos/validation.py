"""Request validation against a model's feature schema: every 4xx names the field that is wrong.

Pure (json + math), so it is unit-tested without a server. A request is either one row
(`{"features": {...}}`) or a batch (`{"instances": [{...}, ...]}`); the result is column lists in the
schema's order, ready for `Predictor.predict`. `null` is a missing value (the model's fitted imputation
fills it); a missing key, an unknown key, a wrong type or a non-finite number is an error.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bentos.routing import key_digest

MAX_REPORTED = 20  # bad fields listed in one answer


class RequestError(Exception):
    """A client error: HTTP `status`, the offending `field` (JSON path) and a message."""

    def __init__(self, status: int, field: str, message: str, others: list[RequestError] | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.status = status
        self.field = field
        self.message = message
        self.others = others or []  # further bad fields of the same request, so one round trip shows all

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": str(self), "field": self.field, "status": self.status}
        if self.others:
            body["errors"] = [{"field": e.field, "error": e.message} for e in [self, *self.others]]
        return body


@dataclass(frozen=True)
class ParsedRequest:
    columns: dict[str, list[Any]]
    rows: int
    single: bool  # {"features": ...}: answer with `prediction`, else `predictions`
    sticky_key: str | None
    body: dict[str, Any]


def parse_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise RequestError(400, "body", "empty request body; send JSON like {\"features\": {...}}")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "body", f"malformed JSON: {exc}") from None
    except RecursionError:  # the decoder recurses per nesting level; no request of ours nests deeply
        raise RequestError(400, "body", "JSON nested too deeply; a request is {\"features\": {name: value}}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "body", f"expected a JSON object, got {_json_type(body)}")
    return body


def sticky_key_of(body: Mapping[str, Any], sticky_field: str | None) -> str | None:
    return _sticky_key(body, sticky_field)


def validate_request(
    body: Mapping[str, Any],
    schema: Mapping[str, str],
    *,
    max_rows: int,
    sticky_field: str | None = None,
    known: frozenset[str] | None = None,
) -> ParsedRequest:
    """`schema`: the features the chosen variant needs; `known`: every feature any live variant needs
    (a challenger may use more features than the champion, so clients send the union)."""
    allowed = {"features", "instances", "key"} | ({sticky_field} if sticky_field else set())
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(400, unknown[0], f"unknown field; expected one of {sorted(allowed)}")
    if ("features" in body) == ("instances" in body):
        raise RequestError(400, "features", "send exactly one of 'features' (one row) or 'instances' (a list of rows)")
    if "features" in body:
        rows_in = [body["features"]]
        paths = ["features"]
        single = True
    else:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise RequestError(400, "instances", f"expected a list of objects, got {_json_type(instances)}")
        if not instances:
            raise RequestError(400, "instances", "must contain at least one row")
        if len(instances) > max_rows:
            raise RequestError(413, "instances", f"{len(instances)} rows exceed the limit of {max_rows} per request")
        rows_in = instances
        paths = [f"instances[{i}]" for i in range(len(instances))]
        single = False
    columns: dict[str, list[Any]] = {name: [] for name in schema}
    problems: list[RequestError] = []
    for row, path in zip(rows_in, paths, strict=True):
        if len(problems) >= MAX_REPORTED:
            break
        if not isinstance(row, dict):
            problems.append(RequestError(400, path, f"expected an object of features, got {_json_type(row)}"))
            continue
        extra = sorted(set(row) - (known if known is not None else set(schema)))
        problems += [RequestError(400, f"{path}.{name}", f"unknown feature; the model expects {list(schema)}") for name in extra]
        for name, dtype in schema.items():
            if name not in row:
                problems.append(RequestError(400, f"{path}.{name}", f"missing feature (type {dtype}; use null for a missing value)"))
                continue
            try:
                columns[name].append(_check_value(row[name], dtype, f"{path}.{name}"))
            except RequestError as exc:
                problems.append(exc)
    if problems:
        first, *others = problems[:MAX_REPORTED]
        raise RequestError(first.status, first.field, first.message, others)
    return ParsedRequest(columns, len(rows_in), single, _sticky_key(body, sticky_field), dict(body))


def _check_value(value: Any, dtype: str, path: str) -> Any:
    if value is None:
        return None
    if dtype == "string":
        if not isinstance(value, str):
            raise RequestError(400, path, f"expected a string, got {_json_type(value)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(400, path, f"expected a number ({dtype}), got {_json_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(400, path, "expected a finite number")
    if dtype == "int64":
        if isinstance(value, float):
            if not value.is_integer():
                raise RequestError(400, path, f"expected an integer (int64), got {value!r}")
            value = int(value)
        if not -(2**63) <= value < 2**63:
            raise RequestError(400, path, "integer out of int64 range")
        return value
    return float(value)


def _sticky_key(body: Mapping[str, Any], sticky_field: str | None) -> str | None:
    for name in ((sticky_field,) if sticky_field else ()) + ("key",):
        if name in body and body[name] is not None:
            value = body[name]
            if isinstance(value, dict | list):
                raise RequestError(400, name, "routing key must be a string or a number")
            return str(value)
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_api_key(request: Any, auth: Mapping[str, Any]) -> None:
    """401 naming the header when the service requires a key and the request has none or a wrong one."""
    if not auth.get("required"):
        return
    header = auth.get("header", "X-API-Key")
    presented = request.headers.get(header)
    if not presented:
        raise RequestError(401, header, "missing API key")
    digest = key_digest(presented)
    if not any(hmac.compare_digest(digest, known) for known in auth.get("key_sha256", [])):
        raise RequestError(401, header, "invalid API key")
