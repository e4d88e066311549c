"""The data path: Delta (pinned version) → Polars/Arrow → deterministic split → columns → tensors.

Reads only the needed columns of exactly the Delta version recorded in the job, so a candidate can be
retrained bit-for-bit from its lineage. Splits are seeded and independent of the candidate, so every
candidate — and the re-scored champion — is evaluated on the same holdout rows. Group and time splits
keep their promise in the cross-validation folds too (a group never on both sides; validate only on
rows later than those fitted on), so CV spread is not flattered by leakage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flows.training.schema import FLOAT_TYPES, INT_TYPES, STRING_TYPES, resolve_features, schema_type  # noqa: F401 - re-exported


def read_table(uri: str, version: int | None, columns: Sequence[str], storage_options: Mapping[str, str] | None = None) -> Any:
    """The pinned Delta version as a Polars DataFrame (only the needed columns)."""
    import polars as pl

    names = list(dict.fromkeys(columns))
    frame = pl.read_delta(uri, version=version, columns=names, storage_options=dict(storage_options or {}) or None)
    # A canonical row order: two builds of the same data may store rows in different orders, and the
    # seeded split and shuffles work on positions. Sorting makes same data + same seed = same model.
    return frame.sort(names, nulls_last=True, maintain_order=True)


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices
    holdout: np.ndarray
    folds: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # (fit, validate) indices within the train rows


NULL_GROUP = "\x00null"  # nulls form one group of their own (never equal to a real string value)


def _group_keys(frame: Any, column: str) -> np.ndarray:
    return np.array([NULL_GROUP if v is None else str(v) for v in frame[column].to_list()], dtype=object)


def _latest_times(times: np.ndarray, rows: np.ndarray, fraction: float) -> np.ndarray:
    """Rows (of `rows`) whose time is at or after a cutoff chosen so that about `fraction` of them are at or
    after it; never all of them. Ties never straddle the cutoff: every kept row is strictly later than every
    other row."""
    values, counts = np.unique(times[rows], return_counts=True)
    if values.size < 2:
        raise ValueError("a time-based split needs at least two distinct times")
    held, cut = 0, values.size
    while cut > 1 and held < rows.size * fraction:  # keep at least one time for training
        cut -= 1
        held += counts[cut]
    return rows[times[rows] >= values[cut]]


def _holdout(frame: Any, split: Mapping[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rows = frame.height
    fraction = float(split.get("holdout", 0.2))
    by = split.get("by", "random")
    if by == "random":
        order = rng.permutation(rows)
        cut = max(1, round(rows * fraction))
        return np.sort(order[cut:]), np.sort(order[:cut])
    if by == "group":
        keys = _group_keys(frame, split["column"])
        groups, counts = np.unique(keys.astype(str), return_counts=True)
        size = dict(zip(groups.tolist(), counts.tolist(), strict=True))
        chosen: list[str] = []
        held = 0
        for group in groups[rng.permutation(groups.size)].tolist()[:-1]:  # keep at least one group for training
            chosen.append(group)
            held += size[group]
            if held >= rows * fraction:
                break
        mask = np.isin(keys.astype(str), chosen)
        return np.flatnonzero(~mask), np.flatnonzero(mask)
    if by == "time":
        series = frame[split["column"]]
        present = np.flatnonzero(series.is_not_null().to_numpy())  # rows without a time belong to neither side
        times = series.to_numpy()
        holdout = _latest_times(times, present, fraction)
        return np.setdiff1d(present, holdout), np.sort(holdout)
    raise ValueError(f"unknown split {by!r}")


def _folds(frame: Any, split: Mapping[str, Any], train: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (fit, validate) pairs over the training rows, honouring the split kind: random folds; group folds
    (a group lies in one validation fold only); time folds walking forward (validate strictly after fit)."""
    by = split.get("by", "random")
    rng = np.random.default_rng(int(split.get("seed", 0)) + 1)
    if by == "random":
        parts = np.array_split(train[rng.permutation(train.size)], k)
        return [(np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i])), np.sort(parts[i])) for i in range(k)]
    if by == "group":
        keys = _group_keys(frame, split["column"]).astype(str)[train]
        groups, counts = np.unique(keys, return_counts=True)
        if groups.size < k:
            raise ValueError(f"{k}-fold cross-validation by group needs ≥ {k} groups in the training rows, found {groups.size}")
        order = rng.permutation(groups.size)
        order = order[np.argsort(-counts[order], kind="stable")]  # largest first, ties in seeded order
        fold_of, load = {}, np.zeros(k, dtype=np.int64)
        for index in order.tolist():  # each group to the lightest fold (balanced like scikit-learn's GroupKFold)
            target = int(np.argmin(load))
            fold_of[groups[index]] = target
            load[target] += counts[index]
        assignment = np.array([fold_of[key] for key in keys.tolist()])
        return [(np.sort(train[assignment != i]), np.sort(train[assignment == i])) for i in range(k)]
    times = frame[split["column"]].to_numpy()
    values = np.unique(times[train])
    if values.size < k + 1:
        raise ValueError(f"{k}-fold cross-validation by time needs ≥ {k + 1} distinct times in the training rows, found {values.size}")
    chunks = np.array_split(values, k + 1)  # fold i fits on chunks[0..i] and validates on chunk i+1
    folds = []
    for i in range(k):
        cutoff, end = chunks[i + 1][0], chunks[i + 1][-1]
        folds.append((np.sort(train[times[train] < cutoff]), np.sort(train[(times[train] >= cutoff) & (times[train] <= end)])))
    return folds


def make_split(frame: Any, split: Mapping[str, Any]) -> Split:
    """Seeded holdout — random, by group (no group on both sides) or by time (holdout strictly later than
    every training row; rows without a time are left out) — plus optional k folds over the training rows."""
    rng = np.random.default_rng(int(split.get("seed", 0)))
    train, holdout = _holdout(frame, split, rng)
    if train.size == 0 or holdout.size == 0:
        raise ValueError(f"split leaves {train.size} training and {holdout.size} holdout rows")
    k = int(split.get("folds", 0) or 0)
    folds = _folds(frame, split, train, k) if k >= 2 else []
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
