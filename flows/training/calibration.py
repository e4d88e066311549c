"""Probability calibration of a binary classifier: a declared model step (`calibration:` on the model spec).

Why a step of its own: a network trained on log loss with early-stopped epochs and class imbalance is often
over- or under-confident, and the service's probabilities are what callers threshold and the dashboards
chart. The calibrator is fitted after training on rows the network never saw (a seeded share of the training
split, so the holdout stays an honest judge), stored in the artifact's config and applied by the `Predictor`
at serving, so the service returns the calibrated probabilities the holdout metrics describe.

Numpy only (it runs inside the service): Platt scaling is a 1-D logistic regression on the logit, fitted by
Newton's method with Platt's target smoothing; isotonic is pool-adjacent-violators with linear interpolation
between the fitted steps, clipped outside them (scikit-learn's `IsotonicRegression(out_of_bounds="clip")`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

EPS = 1e-12


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def fit_platt(probability: np.ndarray, y: np.ndarray, iterations: int = 100) -> dict[str, float]:
    """P(y=1) = sigmoid(a·logit(p) + b), minimising log loss on Platt's smoothed targets (damped Newton steps)."""
    x, y = _logit(probability), np.asarray(y, dtype=np.float64)
    positives, negatives = float(y.sum()), float(len(y) - y.sum())
    target = np.where(y > 0.5, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def loss(a: float, b: float) -> float:
        z = a * x + b  # log(1 + e^z) - t·z, written without overflow
        return float(np.sum(np.logaddexp(0.0, z) - target * z))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iterations):
        q = 0.5 * (1 + np.tanh(0.5 * (a * x + b)))  # the sigmoid, overflow-free
        gradient = np.array([np.sum((q - target) * x), np.sum(q - target)])
        w = q * (1 - q) + EPS
        hessian = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-6 and loss(a - scale * step[0], b - scale * step[1]) > current:
            scale /= 2  # a full Newton step can overshoot far from the optimum
        a, b = a - scale * step[0], b - scale * step[1]
        previous, current = current, loss(a, b)
        if np.max(np.abs(scale * step)) < 1e-10 or previous - current < 1e-12 * max(1.0, abs(previous)):
            break
    return {"a": float(a), "b": float(b)}


def fit_isotonic(probability: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """Pool adjacent violators on (p, y) sorted by p: a non-decreasing step function as knots (x, y)."""
    order = np.argsort(probability, kind="mergesort")
    x, target = np.asarray(probability, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]
    # blocks of tied x first (their mean), then merge violating neighbours
    unique, start = np.unique(x, return_index=True)
    sums = np.add.reduceat(target, start)
    counts = np.diff(np.append(start, len(x))).astype(np.float64)
    values, weights, lows, highs = [], [], [], []
    for i in range(len(unique)):
        values.append(sums[i] / counts[i])
        weights.append(counts[i])
        lows.append(unique[i])
        highs.append(unique[i])
        while len(values) > 1 and values[-2] >= values[-1]:
            w = weights[-2] + weights[-1]
            merged = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            values[-2:], weights[-2:], highs[-2:], lows[-2:] = [merged], [w], [highs[-1]], [lows[-2]]
    knots_x, knots_y = [], []
    for value, low, high in zip(values, lows, highs, strict=True):
        knots_x.append(float(low))
        knots_y.append(float(value))
        if high != low:
            knots_x.append(float(high))
            knots_y.append(float(value))
    return {"x": knots_x, "y": knots_y}


def fit(method: str, probability: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    if len(probability) < 2 or len(np.unique(y)) < 2:
        raise ValueError(f"calibration needs both classes among its rows (got {len(probability)} rows)")
    if method == "platt":
        return {"method": "platt", **fit_platt(probability, y)}
    if method == "isotonic":
        return {"method": "isotonic", **fit_isotonic(probability, y)}
    raise ValueError(f"unknown calibration method {method!r}")


def apply(calibrator: Mapping[str, Any] | None, probability: np.ndarray) -> np.ndarray:
    """Calibrated P(positive) for raw probabilities (identity without a calibrator)."""
    p = np.asarray(probability, dtype=np.float64)
    if not calibrator:
        return p
    if calibrator["method"] == "platt":
        return 0.5 * (1 + np.tanh(0.5 * (calibrator["a"] * _logit(p) + calibrator["b"])))
    if calibrator["method"] == "isotonic":
        return np.interp(p, calibrator["x"], calibrator["y"])  # clipped to the end knots outside them
    raise ValueError(f"unknown calibration method {calibrator['method']!r}")


def split_rows(rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows the network trains on, rows the calibrator is fitted on): a seeded share of the training split."""
    shuffled = np.random.default_rng(seed).permutation(rows)
    n = max(2, int(round(len(rows) * fraction)))
    return np.sort(shuffled[n:]), np.sort(shuffled[:n])
