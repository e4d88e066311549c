"""The online store's layout in Redis, shared by the materialiser, the adapter and the services.

Import-light (no redis, deltalake or polars here): `plan` and the service's request path use it.

Layout (Feast's Redis layout, readable by hand): one hash per entity key, `<prefix>:<k1>=<v1>|<k2>=<v2>`
(join keys sorted by name, so every table keyed by the same entity shares the hash, as Feast's feature
views do), one field per feature named `<table>:<feature>`, and a `_ts:<table>` field holding the event
time (epoch seconds) of the row. Values are UTF-8 text: numbers in their shortest round-trip form, booleans
as 0/1, NULL as an absent field. Beside them, per table, a meta hash `<prefix>:_specd:meta:<table>` (the
completed Delta version, fingerprint, data id, feature schema, key count, and a `pending_*` marker while a
materialisation runs) and the set `<prefix>:_specd:tables` of materialised tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

META_TABLES = "_specd:tables"
META_PREFIX = "_specd:meta:"
TS_PREFIX = "_ts:"

# meta hash fields
M_VERSION = "version"  # Delta version last materialised completely
M_FINGERPRINT = "fingerprint"  # the online resource fingerprint it was materialised for
M_DATA_ID = "data_id"  # the table commit's specd.data_id (contents identity)
M_LAYOUT = "layout"  # JSON: keys, features, timestamp (a changed layout means a full rewrite)
M_SCHEMA = "schema"  # JSON {feature: dtype} with dtypes float64 | int64 | string (the model schema's words)
M_KEYS = "keys"  # number of entity keys holding this table's features
M_TTL = "ttl_s"
M_PRUNE = "prune"
M_COMPLETED = "completed_at"
M_PENDING_VERSION = "pending_version"  # written first, removed last: a crash in between is visible
M_PENDING_FINGERPRINT = "pending_fingerprint"


def meta_key(prefix: str, table: str) -> str:
    return f"{prefix}:{META_PREFIX}{table}"


def tables_key(prefix: str) -> str:
    return f"{prefix}:{META_TABLES}"


def entity_key(prefix: str, names: Sequence[str], values: Sequence[Any]) -> str:
    """The hash of one entity: `names` must already be in sorted order (see `sorted_keys`)."""
    return prefix + ":" + "|".join(f"{n}={encode_key_value(v)}" for n, v in zip(names, values, strict=True))


def sorted_keys(keys: Sequence[str]) -> list[str]:
    return sorted(keys)


def encode_key_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def feature_field(table: str, feature: str) -> str:
    return f"{table}:{feature}"


def ts_field(table: str) -> str:
    return f"{TS_PREFIX}{table}"


def decode_value(raw: bytes | str | None, dtype: str) -> Any:
    """A stored value back in the model schema's type (float64 | int64 | string); None stays None."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    if dtype == "float64":
        return float(text)
    if dtype == "int64":
        return int(text) if text.lstrip("-").isdigit() else int(float(text))
    return text


def schema_mismatch(store_schema: Mapping[str, str], model_schema: Mapping[str, str], provided: Sequence[str] = ()) -> list[str]:
    """Why the store cannot feed a model: features it lacks or holds in another type (empty: it can)."""
    problems = []
    for name, dtype in model_schema.items():
        if name in provided:
            continue
        have = store_schema.get(name)
        if have is None:
            problems.append(f"{name} is not in the online store")
        elif have != dtype:
            problems.append(f"{name} is {have} in the online store, the model expects {dtype}")
    return problems
