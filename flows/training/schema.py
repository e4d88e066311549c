"""Feature schema helpers that `validate` and `plan` need: type names and feature selection.

Kept apart from `flows.training.data` (numpy, polars) so the models adapter's checks and plan preview
stay light.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

FLOAT_TYPES = ("Float32", "Float64", "Decimal")
INT_TYPES = ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Boolean")
STRING_TYPES = ("String", "Utf8", "Categorical", "Enum")


def schema_type(type_name: str) -> str | None:
    """Polars/Arrow/Delta type name → feature dtype ("float64" | "int64" | "string"), None if unsupported."""
    name = type_name.split("(")[0].strip()
    lowered = name.lower()
    if name in FLOAT_TYPES or lowered in ("double", "float", "float64", "float32", "halffloat") or lowered.startswith("decimal"):
        return "float64"
    if name in INT_TYPES or lowered in ("long", "integer", "short", "byte", "boolean", "bool", "int64", "int32", "int16", "int8"):
        return "int64"
    if name in STRING_TYPES or lowered in ("string", "large_string", "utf8", "large_utf8"):
        return "string"
    return None


def resolve_features(columns: Mapping[str, str], target: str, features: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """Explicit features, or every column but the target and the excluded ones (table order)."""
    if features:
        return list(features)
    return [c for c in columns if c != target and c not in exclude and not c.startswith("_specd")]
