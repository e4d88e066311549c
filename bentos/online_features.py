"""Serving by entity: fill a request's features from the online store, by the key it carries.

A service whose spec names `features_from: {table, key}` accepts `{"penguin_id": 17}` (or the key inside
`features`, or in each row of `instances`): every such row's features are read with one HMGET, all rows of
a request in one pipelined round trip, decoded into the model schema's types, and request-time features
win over stored ones. The result is an ordinary request body, so the usual validation runs after it.

Failure is bounded and explicit: an unknown entity is a 404 naming the key; a store that is down or slow
is a 503 within `timeout_ms` (connect included; no retries), never a hang; a store whose recorded feature
schema (its meta hash, refreshed every few seconds in the same round trip) does not match what the live
models need is a 503 with the reason — the service refuses rather than predicting on wrong features.

Per-lookup latency and hit/miss/error counts go to the service's `/metrics`:
`specd_service_feature_lookup_duration_seconds{service,table}` and
`specd_service_feature_lookups_total{service,table,result}`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from bentos.validation import RequestError
from flows.online import (
    M_SCHEMA,
    decode_value,
    encode_key_value,
    entity_key,
    feature_field,
    meta_key,
    schema_mismatch,
    ts_field,
)

META_REFRESH_S = 5.0
LOOKUP_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_lookups: dict[str, OnlineFeatures] = {}
_by_settings: dict[int, tuple[Any, OnlineFeatures]] = {}
_metrics: Any = None


def _create_metrics() -> Any:
    global _metrics
    if _metrics is None:
        from prometheus_client import Counter, Histogram

        _metrics = (
            Histogram("specd_service_feature_lookup_duration_seconds", "Online feature lookup latency per request (one round trip).",
                      ["service", "table"], buckets=LOOKUP_BUCKETS),
            Counter("specd_service_feature_lookups", "Online feature lookups per entity: hit, miss or error.", ["service", "table", "result"]),
        )
    return _metrics


class OnlineFeatures:
    """One store connection pool and the lookup for one service's `features_from` settings."""

    def __init__(self, service: str, config: Mapping[str, Any], client: Any = None):
        from flows.online.store import connect_async

        self.service = service
        self.table = str(config["table"])
        self.key = str(config["key"])
        self.keys = list(config.get("keys") or [self.key])
        self.store = dict(config["store"])
        self.prefix = str(self.store["prefix"])
        self.timeout_s = float(config.get("timeout_ms", 250.0)) / 1000
        self.client = client if client is not None else connect_async(self.store, timeout_s=self.timeout_s)
        self.store_schema: dict[str, str] | None = None
        self._meta_at = 0.0
        self.duration, self.counts = _create_metrics()

    async def enrich(self, body: dict[str, Any], schema: Mapping[str, str]) -> dict[str, Any]:
        """`body` with the features of every row that carries the key filled in from the store."""
        rows, rebuild = _rows_of(body, self.key)
        wanted = [(i, row) for i, row in enumerate(rows) if isinstance(row, dict) and self.key in row]
        if not wanted:
            return body
        values = [_key_value(row[self.key], self._field_path(body, i)) for i, row in wanted]
        names = list(schema)
        fields = [feature_field(self.table, n) for n in names] + [ts_field(self.table)]
        refresh = time.monotonic() - self._meta_at > META_REFRESH_S or self.store_schema is None
        started = time.perf_counter()
        try:
            replies = await asyncio.wait_for(self._fetch([entity_key(self.prefix, [self.key], [v]) for v in values], fields, refresh), self.timeout_s)
        except (TimeoutError, OSError) as exc:
            self._count("error", len(values))
            raise RequestError(503, "features_from", f"online store unavailable ({type(exc).__name__}); no features for {self.key}") from None
        except Exception as exc:  # redis.exceptions.* (connection refused, loading, auth)
            self._count("error", len(values))
            raise RequestError(503, "features_from", f"online store unavailable ({type(exc).__name__}: {exc})") from None
        finally:
            self.duration.labels(self.service, self.table).observe(time.perf_counter() - started)
        if refresh:
            raw = replies.pop()
            self.store_schema = json.loads(raw) if raw else {}
            self._meta_at = time.monotonic()
        for (i, row), value, stored in zip(wanted, values, replies, strict=True):
            if stored[-1] is None:  # no `_ts:<table>`: the entity is not in the table
                self._count("miss")
                raise RequestError(404, self._field_path(body, i), f"no online features for {self.key}={value!r} in table {self.table}")
            provided = set(row) - {self.key}
            problems = schema_mismatch(self.store_schema or {}, schema, provided)
            if problems:
                self._count("error")
                raise RequestError(503, "features_from", f"online features of table {self.table} do not match the model's feature schema: {'; '.join(problems)}")
            filled = {name: decode_value(raw, schema[name]) for name, raw in zip(names, stored[:-1], strict=True) if name not in provided}
            rows[i] = {**filled, **{k: v for k, v in row.items() if k != self.key or k in schema}}
            self._count("hit")
        return rebuild(rows)

    async def _fetch(self, keys: list[str], fields: list[str], with_meta: bool) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, fields)
        if with_meta:
            pipe.hget(meta_key(self.prefix, self.table), M_SCHEMA)
        return await pipe.execute()

    def _count(self, result: str, n: int = 1) -> None:
        self.counts.labels(self.service, self.table, result).inc(n)

    def _field_path(self, body: Mapping[str, Any], index: int) -> str:
        if "instances" in body:
            return f"instances[{index}].{self.key}"
        return f"features.{self.key}" if "features" in body else self.key


def _rows_of(body: dict[str, Any], key: str) -> tuple[list[Any], Any]:
    """The request's rows and a function that puts (filled) rows back into a body of the same shape."""
    rest = {k: v for k, v in body.items() if k not in ("features", "instances", key)}
    if isinstance(body.get("instances"), list):
        return list(body["instances"]), lambda rows: {**rest, "instances": rows}
    if isinstance(body.get("features"), dict):
        row = dict(body["features"])
        if key in body:
            row.setdefault(key, body[key])
        return [row], lambda rows: {**rest, "features": rows[0]}
    if key in body and "features" not in body:
        return [{key: body[key]}], lambda rows: {**rest, "features": rows[0]}
    return [], lambda rows: body


def _key_value(value: Any, path: str) -> str:
    if value is None or isinstance(value, dict | list | bool):
        raise RequestError(400, path, "entity key must be a string or a number")
    if isinstance(value, float) and not value.is_integer():
        raise RequestError(400, path, "entity key must be a string or an integer")
    return encode_key_value(value)


def lookup_for(service: str, config: Mapping[str, Any]) -> OnlineFeatures:
    """The worker's lookup for these settings (new settings from a routing swap get a new one)."""
    entry = _by_settings.get(id(config))
    if entry is not None and entry[0] is config:  # the same routing: no re-serialising per request
        return entry[1]
    cache_key = json.dumps({"service": service, **config}, sort_keys=True, default=str)
    lookup = _lookups.get(cache_key)
    if lookup is None:
        lookup = _lookups[cache_key] = OnlineFeatures(service, config)
    _by_settings.clear()
    _by_settings[id(config)] = (config, lookup)
    return lookup


async def enrich(body: dict[str, Any], live: Any) -> dict[str, Any]:
    """The service's hook: a no-op unless the live routing has `features_from` settings."""
    config = live.settings.get("features_from") if live is not None else None
    if not config:
        return body
    schema: dict[str, str] = {}
    for variant in live.variants.values():
        schema.update(variant.schema)
    return await lookup_for(live.routing.service, config).enrich(body, schema)
