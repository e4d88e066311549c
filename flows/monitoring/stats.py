"""Drift statistics, vectorised with numpy over bounded samples: the per-column tests Evidently runs.

Why not Evidently itself: see README "Drift monitoring" (it needs pandas<3 and ~25 further packages —
scipy, scikit-learn, statsmodels, plotly<6, nltk, litestar, a telemetry client — none of which this
project otherwise installs). The statistics are the same ones, with Evidently's default thresholds:

- numeric: Wasserstein-1 distance normalised by the reference standard deviation ("wasserstein", drifted
  when > 0.1), two-sample Kolmogorov–Smirnov p-value ("ks", drifted when < 0.05), population stability index
  over reference deciles ("psi", drifted when > 0.1);
- categorical: Jensen–Shannon distance (natural log, as scipy's default; "jensenshannon", > 0.1), Pearson
  chi² goodness-of-fit p-value against the reference frequencies ("chisquare", < 0.05), PSI over categories.

A reference *profile* keeps what these need — a sorted sample of each numeric column, the category counts of
each categorical one — so it is computed once per model release and cached; the current window is a sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bentos.ab_report import chi_square_sf as chi2_sf  # one regularised-gamma tail for specd ab and drift

EPS = 1e-4  # floor for empty bins (PSI, Jensen–Shannon), as Evidently does
P_VALUE = frozenset({"ks", "chisquare"})


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # "numeric" | "categorical"
    method: str
    score: float  # the statistic: a distance, or a p-value for ks / chisquare
    threshold: float
    drifted: bool
    current_rows: int

    def line(self) -> str:
        op = "<" if self.method in P_VALUE else ">"
        return f"{self.column} {self.score:.3g} ({op} {self.threshold:g})" if self.drifted else f"{self.column} {self.score:.3g}"


def numeric_profile(values: np.ndarray) -> dict[str, Any]:
    finite = np.sort(values[np.isfinite(values)].astype(np.float64))
    return {"kind": "numeric", "sorted": finite.tolist(), "std": float(finite.std()) if finite.size else 0.0}


def categorical_profile(values: Sequence[Any]) -> dict[str, Any]:
    cats, counts = np.unique(np.asarray([str(v) for v in values if v is not None], dtype=object).astype(str), return_counts=True)
    return {"kind": "categorical", "counts": {str(c): int(n) for c, n in zip(cats, counts, strict=True)}}


def wasserstein_normed(ref_sorted: np.ndarray, cur: np.ndarray, ref_std: float) -> float:
    """∫|F_ref − F_cur| dx over the merged support, divided by the reference std (Evidently's "normed")."""
    cur = np.sort(cur)
    grid = np.concatenate([ref_sorted, cur])
    grid.sort(kind="mergesort")
    deltas = np.diff(grid)
    f_ref = np.searchsorted(ref_sorted, grid[:-1], side="right") / ref_sorted.size
    f_cur = np.searchsorted(cur, grid[:-1], side="right") / cur.size
    distance = float(np.sum(np.abs(f_ref - f_cur) * deltas))
    return distance / ref_std if ref_std > 0 else (0.0 if distance == 0 else math.inf)


def ks_pvalue(ref_sorted: np.ndarray, cur: np.ndarray) -> float:
    """Two-sample KS test, asymptotic p-value (Kolmogorov distribution with the Stephens correction)."""
    cur = np.sort(cur)
    grid = np.concatenate([ref_sorted, cur])
    d = float(np.max(np.abs(np.searchsorted(ref_sorted, grid, side="right") / ref_sorted.size
                             - np.searchsorted(cur, grid, side="right") / cur.size)))
    n_eff = ref_sorted.size * cur.size / (ref_sorted.size + cur.size)
    lam = (math.sqrt(n_eff) + 0.12 + 0.11 / math.sqrt(n_eff)) * d
    if lam < 1e-3:
        return 1.0
    k = np.arange(1, 101)
    p = 2.0 * float(np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * lam**2)))
    return min(max(p, 0.0), 1.0)


def _psi(ref_frac: np.ndarray, cur_frac: np.ndarray) -> float:
    ref_frac, cur_frac = np.maximum(ref_frac, EPS), np.maximum(cur_frac, EPS)
    return float(np.sum((cur_frac - ref_frac) * np.log(cur_frac / ref_frac)))


def psi_numeric(ref_sorted: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    edges = np.unique(np.quantile(ref_sorted, np.linspace(0, 1, bins + 1))[1:-1])
    ref_counts = np.bincount(np.searchsorted(edges, ref_sorted, side="right"), minlength=edges.size + 1)
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1)
    return _psi(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum())


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon *distance* (square root of the divergence, natural log), like scipy's default."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_pm = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        kl_qm = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return float(math.sqrt(max((kl_pm + kl_qm) / 2, 0.0)))


def _category_counts(profile: Mapping[str, Any], cur: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    ref_counts: Mapping[str, int] = profile["counts"]
    cats, counts = np.unique(np.asarray([str(v) for v in cur], dtype=str), return_counts=True)
    current = dict(zip(cats.tolist(), counts.tolist(), strict=True))
    keys = sorted(set(ref_counts) | set(current))
    return (np.array([ref_counts.get(k, 0) for k in keys], dtype=np.float64),
            np.array([current.get(k, 0) for k in keys], dtype=np.float64))


def column_drift(column: str, profile: Mapping[str, Any], current: Sequence[Any] | np.ndarray, method: str,
                 threshold: float, *, ref_array: np.ndarray | None = None) -> ColumnDrift:
    """One column's drift: `profile` from numeric_profile/categorical_profile, `current` the window's sample."""
    kind = profile["kind"]
    if kind == "numeric":
        cur = np.asarray(current, dtype=np.float64)
        cur = cur[np.isfinite(cur)]
        ref = ref_array if ref_array is not None else np.asarray(profile["sorted"], dtype=np.float64)
        if cur.size == 0 or ref.size == 0:
            return ColumnDrift(column, kind, method, math.nan, threshold, False, int(cur.size))
        if method == "wasserstein":
            score = wasserstein_normed(ref, cur, float(profile["std"]))
        elif method == "ks":
            score = ks_pvalue(ref, cur)
        elif method == "psi":
            score = psi_numeric(ref, cur)
        else:
            raise ValueError(f"unknown numeric drift method {method!r}")
        n = int(cur.size)
    else:
        values = [v for v in current if v is not None]
        n = len(values)
        if n == 0:
            return ColumnDrift(column, kind, method, math.nan, threshold, False, 0)
        ref_counts, cur_counts = _category_counts(profile, values)
        if method == "jensenshannon":
            score = jensen_shannon(ref_counts, cur_counts)
        elif method == "chisquare":
            expected = np.maximum(ref_counts / ref_counts.sum(), EPS) * n
            statistic = float(np.sum((cur_counts - expected) ** 2 / expected))
            score = chi2_sf(statistic, max(ref_counts.size - 1, 1))
        elif method == "psi":
            score = _psi(ref_counts / ref_counts.sum(), cur_counts / n)
        else:
            raise ValueError(f"unknown categorical drift method {method!r}")
    drifted = score < threshold if method in P_VALUE else score > threshold
    return ColumnDrift(column, kind, method, float(score), threshold, bool(drifted), n)


def drift_share(columns: Sequence[ColumnDrift]) -> float:
    judged = [c for c in columns if not math.isnan(c.score)]
    return sum(c.drifted for c in judged) / len(judged) if judged else 0.0
