"""The data path: Delta (pinned version) → Polars/Arrow → deterministic split → columns → tensors.

Reads only the needed columns of exactly the Delta version recorded in the job, so a candidate can be
retrained bit-for-bit from its lineage. Splits are seeded and independent of the candidate, so every
candidate — and the re-scored champion — is evaluated on the same holdout rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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


def read_table(uri: str, version: int | None, columns: Sequence[str], storage_options: Mapping[str, str] | None = None) -> Any:
    """The pinned Delta version as a Polars DataFrame (only the needed columns)."""
    import polars as pl

    frame = pl.read_delta(uri, version=version, columns=list(dict.fromkeys(columns)), storage_options=dict(storage_options or {}) or None)
    return frame


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices
    holdout: np.ndarray
    folds: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # (fit, validate) indices within the train rows


def make_split(frame: Any, split: Mapping[str, Any]) -> Split:
    """Random, group- or time-based holdout (seeded); optional k folds over the training rows."""
    rows = frame.height
    rng = np.random.default_rng(int(split.get("seed", 0)))
    holdout_fraction = float(split.get("holdout", 0.2))
    by = split.get("by", "random")
    if by == "random":
        order = rng.permutation(rows)
        cut = max(1, round(rows * holdout_fraction))
        holdout, train = np.sort(order[:cut]), np.sort(order[cut:])
    elif by == "group":
        keys = np.array([str(v) for v in frame[split["column"]].to_list()])
        groups = np.array(sorted(set(keys.tolist())))
        counts = {g: int((keys == g).sum()) for g in groups.tolist()}
        chosen: list[str] = []
        held = 0
        for group in groups[rng.permutation(len(groups))].tolist()[:-1]:  # keep at least one group for training
            chosen.append(group)
            held += counts[group]
            if held >= rows * holdout_fraction:
                break
        mask = np.isin(keys, list(chosen))
        holdout, train = np.flatnonzero(mask), np.flatnonzero(~mask)
    elif by == "time":
        order = np.argsort(frame[split["column"]].to_numpy(), kind="stable")
        cut = max(1, round(rows * holdout_fraction))
        holdout, train = np.sort(order[rows - cut:]), np.sort(order[:rows - cut])
    else:
        raise ValueError(f"unknown split {by!r}")
    folds: list[tuple[np.ndarray, np.ndarray]] = []
    k = int(split.get("folds", 0) or 0)
    if k >= 2:
        shuffled = train[np.random.default_rng(int(split.get("seed", 0)) + 1).permutation(train.size)]
        parts = np.array_split(shuffled, k)
        for i in range(k):
            validate = np.sort(parts[i])
            fit = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i]))
            folds.append((fit, validate))
    if train.size == 0 or holdout.size == 0:
        raise ValueError(f"split leaves {train.size} training and {holdout.size} holdout rows")
    return Split(train, holdout, tuple(folds))


def columns_at(frame: Any, names: Sequence[str], rows: np.ndarray) -> dict[str, Any]:
    """Selected rows as {name: ndarray (numeric, NaN for nulls) | list (strings)}."""
    from flows.training.preprocess import NUMERIC_TYPES

    taken = frame[rows.tolist()] if rows.size != frame.height else frame
    out: dict[str, Any] = {}
    for name in names:
        series = taken[name]
        if schema_type(str(series.dtype)) in NUMERIC_TYPES:
            out[name] = series.cast(float).to_numpy()
        else:
            out[name] = series.cast(str).to_list()
    return out


def target_classes(frame: Any, target: str, task: str) -> list[Any] | None:
    if task == "regression":
        return None
    values = sorted(v for v in frame[target].unique().to_list() if v is not None)
    if task == "binary" and len(values) != 2:
        raise ValueError(f"binary target {target!r} has {len(values)} distinct values: {values[:10]}")
    if task == "multiclass" and len(values) < 2:
        raise ValueError(f"multiclass target {target!r} has fewer than 2 classes")
    return values
