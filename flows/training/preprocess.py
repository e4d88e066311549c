"""Fitted preprocessing: imputation, scaling and categorical encoding as plain JSON state + numpy.

Fitted on the training split only and saved inside the model artifact, so serving applies exactly the
transform training applied (no train/serve skew). Numpy only: the BentoML service loads it without
polars or Lightning. Columns arrive as a mapping {name: list | ndarray}; the output is one float32
matrix with a stable column order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

NUMERIC_TYPES = ("float64", "int64")
MISSING_CATEGORY = "__missing__"


def _numeric(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _strings(values: Any) -> list[str | None]:
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


def _fit_numeric(values: np.ndarray, impute: str, scale: str) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    if impute == "none":
        fill = None
    elif present.size == 0:
        fill = 0.0
    elif impute == "mean":
        fill = float(present.mean())
    elif impute == "median":
        fill = float(np.median(present))
    elif impute == "zero":
        fill = 0.0
    else:
        raise ValueError(f"unknown numeric imputation {impute!r}")
    filled = np.where(np.isnan(values), fill if fill is not None else np.nan, values)
    filled = filled[~np.isnan(filled)]
    center, spread = 0.0, 1.0
    if filled.size and scale == "standard":
        center, spread = float(filled.mean()), float(filled.std())
    elif filled.size and scale == "minmax":
        center, spread = float(filled.min()), float(filled.max() - filled.min())
    elif filled.size and scale == "robust":
        q1, median, q3 = np.percentile(filled, [25, 50, 75])
        center, spread = float(median), float(q3 - q1)
    elif scale not in ("standard", "minmax", "robust", "none"):
        raise ValueError(f"unknown scaling {scale!r}")
    return {"impute": fill, "center": center, "scale": spread if spread > 1e-12 else 1.0, "width": 1}


def _fit_categorical(values: list[str | None], impute: str, encode: str, max_categories: int) -> dict[str, Any]:
    fill = None
    present = [v for v in values if v is not None]
    if impute == "most_frequent" and present:
        fill = Counter(present).most_common(1)[0][0]
    elif impute == "constant" or (impute == "most_frequent" and not present):
        fill = MISSING_CATEGORY
    elif impute != "none":
        raise ValueError(f"unknown categorical imputation {impute!r}")
    filled = [fill if v is None else v for v in values]
    counts = Counter(v for v in filled if v is not None)
    # Most frequent first, ties by name: deterministic across runs and Python hash seeds.
    categories = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:max_categories]
    state: dict[str, Any] = {"impute": fill, "encode": encode, "categories": sorted(categories)}
    total = max(1, len(filled))
    if encode == "onehot":
        state["width"] = len(categories)
    elif encode == "ordinal":
        state["width"] = 1
    elif encode == "frequency":
        state["frequency"] = {c: counts[c] / total for c in sorted(categories)}
        state["width"] = 1
    else:
        raise ValueError(f"unknown encoding {encode!r}")
    return state


def fit(
    columns: Mapping[str, Any],
    schema: Mapping[str, str],
    options: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Fit on the training split. `options[col]` holds impute/scale (numeric) or impute/encode (string)."""
    fitted = []
    for name, dtype in schema.items():
        opts = options[name]
        if dtype in NUMERIC_TYPES:
            state = _fit_numeric(_numeric(columns[name]), opts.get("impute", "median"), opts.get("scale", "standard"))
            state["kind"] = "numeric"
        else:
            state = _fit_categorical(
                _strings(columns[name]), opts.get("impute", "most_frequent"), opts.get("encode", "onehot"),
                int(opts.get("max_categories", 64)),
            )
            state["kind"] = "categorical"
        fitted.append({"name": name, "dtype": dtype, **state})
    return {"columns": fitted, "output_dim": int(sum(c["width"] for c in fitted))}


def output_names(state: Mapping[str, Any]) -> list[str]:
    names = []
    for column in state["columns"]:
        if column["kind"] == "categorical" and column["encode"] == "onehot":
            names.extend(f"{column['name']}={c}" for c in column["categories"])
        else:
            names.append(column["name"])
    return names


def transform(state: Mapping[str, Any], columns: Mapping[str, Any]) -> np.ndarray:
    """Apply fitted state → float32 matrix [rows, output_dim]. Missing values use the fitted fill."""
    blocks: list[np.ndarray] = []
    rows = None
    for column in state["columns"]:
        name = column["name"]
        if name not in columns:
            raise KeyError(f"missing feature column {name!r}")
        raw = columns[name]
        if column["kind"] == "numeric":
            values = _numeric(raw)
            if column["impute"] is not None:
                values = np.where(np.isnan(values), column["impute"], values)
            block = ((values - column["center"]) / column["scale"])[:, None]
        else:
            values = [column["impute"] if v is None else v for v in _strings(raw)]
            categories = column["categories"]
            if column["encode"] == "onehot":
                index = {c: i for i, c in enumerate(categories)}
                block = np.zeros((len(values), len(categories)), dtype=np.float64)
                for row, value in enumerate(values):
                    position = index.get(value)
                    if position is not None:
                        block[row, position] = 1.0
            elif column["encode"] == "ordinal":
                index = {c: i + 1 for i, c in enumerate(categories)}  # 0 = unseen
                block = np.array([index.get(v, 0) for v in values], dtype=np.float64)[:, None]
            else:
                freq = column["frequency"]
                block = np.array([freq.get(v, 0.0) for v in values], dtype=np.float64)[:, None]
        if rows is None:
            rows = block.shape[0]
        elif block.shape[0] != rows:
            raise ValueError(f"column {name!r} has {block.shape[0]} values, expected {rows}")
        blocks.append(block)
    if not blocks:
        raise ValueError("no feature columns")
    matrix = np.concatenate(blocks, axis=1).astype(np.float32)
    return np.nan_to_num(matrix, nan=0.0, posinf=0.0, neginf=0.0)


def encode_target(values: Sequence[Any] | np.ndarray, task: str, classes: list[Any] | None) -> np.ndarray:
    """Targets → training labels: class index (classification) or float (regression)."""
    if task == "regression":
        return _numeric(values).astype(np.float32)
    index = {c: i for i, c in enumerate(classes or [])}
    try:
        return np.array([index[v] for v in (values.tolist() if isinstance(values, np.ndarray) else values)], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"target value {exc.args[0]!r} was not seen in training") from None
