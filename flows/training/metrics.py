"""Evaluation metrics in numpy: classification, regression, per-group and fairness differences.

Numpy only (scikit-learn is a test-only dependency, to cross-check these): the formulas are short and this keeps evaluation identical
wherever a candidate or a re-scored champion is evaluated. Every value is a plain float/list so results
go straight into JSON, BentoML metadata and Prometheus gauges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

EPS = 1e-12


def _safe_div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann–Whitney AUC with average ranks for ties; NaN when only one class is present."""
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(y.size, dtype=np.float64)
    sorted_scores = score[order]
    i = 0
    while i < y.size:  # average ranks of tied scores
        j = i
        while j + 1 < y.size and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def roc_points(y: np.ndarray, score: np.ndarray, max_points: int = 25) -> list[list[float]]:
    """[[fpr, tpr, threshold], ...] at up to `max_points` thresholds."""
    positives, negatives = max(int(y.sum()), 1), max(int(y.size - y.sum()), 1)
    thresholds = np.unique(np.quantile(score, np.linspace(0, 1, max_points))) if y.size else np.array([])
    points = [[1.0, 1.0, 0.0]]
    for t in thresholds:
        predicted = score >= t
        points.append([_safe_div(float((predicted & (y == 0)).sum()), negatives),
                       _safe_div(float((predicted & (y == 1)).sum()), positives), float(t)])
    points.append([0.0, 0.0, 1.0])
    return sorted(points)


def pr_points(y: np.ndarray, score: np.ndarray, max_points: int = 25) -> list[list[float]]:
    """[[recall, precision, threshold], ...] at up to `max_points` thresholds, recall ascending."""
    positives = max(int(y.sum()), 1)
    thresholds = np.unique(np.quantile(score, np.linspace(0, 1, max_points))) if y.size else np.array([])
    points = []
    for t in thresholds:
        predicted = score >= t
        tp = float((predicted & (y == 1)).sum())
        points.append([_safe_div(tp, positives), _safe_div(tp, float(predicted.sum())) if predicted.any() else 1.0, float(t)])
    return sorted(points, key=lambda p: (p[0], -p[1]))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Step-wise area under the precision-recall curve at every threshold (scikit-learn's definition)."""
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    s, hits = score[order], y[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last index of each distinct threshold
    tp = np.cumsum(hits)[last]
    precision = tp / (last + 1)
    recall_steps = np.diff(np.r_[0.0, tp / positives])
    return float((recall_steps * precision).sum())


def calibration(y: np.ndarray, probability: np.ndarray, bins: int = 10) -> tuple[list[list[float]], float]:
    """Reliability curve [[mean predicted, observed positive rate, rows], ...] over `bins` equal-width bins
    (empty bins left out, scikit-learn's binning) and the expected calibration error: the row-weighted mean
    of |observed − predicted| over the bins."""
    if not y.size:
        return [], float("nan")
    index = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], probability)
    counts = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, weights=probability, minlength=bins)
    observed = np.bincount(index, weights=y.astype(np.float64), minlength=bins)
    curve = [[float(predicted[b] / counts[b]), float(observed[b] / counts[b]), int(counts[b])] for b in range(bins) if counts[b]]
    ece = float(sum(abs(o - p) * n for p, o, n in curve) / y.size)
    return curve, ece


def binary_metrics(y: np.ndarray, probability: np.ndarray) -> dict[str, Any]:
    y = y.astype(np.int64)
    predicted = (probability >= 0.5).astype(np.int64)
    tp = int(((predicted == 1) & (y == 1)).sum())
    tn = int(((predicted == 0) & (y == 0)).sum())
    fp = int(((predicted == 1) & (y == 0)).sum())
    fn = int(((predicted == 0) & (y == 1)).sum())
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    clipped = np.clip(probability, EPS, 1 - EPS)
    curve, ece = calibration(y, probability)
    return {
        "accuracy": _safe_div(tp + tn, y.size),
        "precision": precision,
        "recall": recall,
        "f1": _safe_div(2 * precision * recall, precision + recall),
        "roc_auc": roc_auc(y, probability),
        "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))) if y.size else float("nan"),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "roc_curve": roc_points(y, probability),
        "pr_curve": pr_points(y, probability),
        "average_precision": average_precision(y, probability),
        "calibration_curve": curve,
        "ece": ece,
    }


def multiclass_metrics(y: np.ndarray, probability: np.ndarray) -> dict[str, Any]:
    classes = probability.shape[1]
    predicted = probability.argmax(axis=1)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (y, predicted), 1)
    precisions, recalls, f1s, aucs = [], [], [], []
    for c in range(classes):
        tp = confusion[c, c]
        p, r = _safe_div(tp, confusion[:, c].sum()), _safe_div(tp, confusion[c, :].sum())
        precisions.append(p)
        recalls.append(r)
        f1s.append(_safe_div(2 * p * r, p + r))
        auc = roc_auc((y == c).astype(np.int64), probability[:, c])
        if not np.isnan(auc):
            aucs.append(auc)
    clipped = np.clip(probability[np.arange(y.size), y], EPS, 1.0)
    return {
        "accuracy": _safe_div(float((predicted == y).sum()), y.size),
        "precision": float(np.mean(precisions)),
        "recall": float(np.mean(recalls)),
        "f1": float(np.mean(f1s)),
        "roc_auc": float(np.mean(aucs)) if aucs else float("nan"),
        "log_loss": float(-np.mean(np.log(clipped))) if y.size else float("nan"),
        "confusion_matrix": confusion.tolist(),
    }


def regression_metrics(y: np.ndarray, prediction: np.ndarray) -> dict[str, Any]:
    error = prediction - y
    total = float(((y - y.mean()) ** 2).sum()) if y.size else 0.0
    return {
        "mae": float(np.abs(error).mean()) if y.size else float("nan"),
        "rmse": float(np.sqrt((error**2).mean())) if y.size else float("nan"),
        "r2": 1.0 - float((error**2).sum()) / total if total else float("nan"),
    }


def evaluate(task: str, y: np.ndarray, output: np.ndarray, groups: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any]:
    """All metrics of the task; with `groups` ({attribute: values per row}) per-group metrics and, for
    binary tasks, `fairness` = {attribute: {demographic_parity_difference, equal_opportunity_difference}}."""
    if task == "binary":
        metrics = binary_metrics(y, output)
    elif task == "multiclass":
        metrics = multiclass_metrics(y, output)
    else:
        metrics = regression_metrics(y, output)
    metrics["rows"] = int(y.size)
    per_group: dict[str, Any] = {}
    fairness: dict[str, Any] = {}
    for attribute, values in (groups or {}).items():
        keys = np.array(["<null>" if v is None else str(v) for v in values])
        per_group[attribute] = {}
        selection, opportunity = [], []
        for group in sorted(set(keys.tolist())):
            mask = keys == group
            if task == "binary":
                predicted = output[mask] >= 0.5
                positives = y[mask] == 1
                entry = {"rows": int(mask.sum()), "accuracy": _safe_div(float((predicted == positives).sum()), mask.sum()),
                         "selection_rate": float(predicted.mean()) if mask.any() else 0.0,
                         "true_positive_rate": _safe_div(float((predicted & positives).sum()), float(positives.sum()))}
                selection.append(entry["selection_rate"])
                if positives.any():
                    opportunity.append(entry["true_positive_rate"])
            elif task == "multiclass":
                entry = {"rows": int(mask.sum()), "accuracy": _safe_div(float((output[mask].argmax(axis=1) == y[mask]).sum()), mask.sum())}
            else:
                entry = {"rows": int(mask.sum()), **regression_metrics(y[mask], output[mask])}
            per_group[attribute][group] = entry
        if task == "binary":
            fairness[attribute] = {
                "demographic_parity_difference": float(max(selection) - min(selection)) if selection else 0.0,
                "equal_opportunity_difference": float(max(opportunity) - min(opportunity)) if opportunity else 0.0,
            }
    if per_group:
        metrics["per_group"] = per_group
    if fairness:
        metrics["fairness"] = fairness
    return metrics
