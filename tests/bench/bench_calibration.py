"""Benchmark: fitting and applying the calibration step (flows/training/calibration.py) against scikit-learn.

Measured in one process, min/median/max over ≥ 3 runs, on ROWS synthetic miscalibrated probabilities:
- specd `platt` / `isotonic`: fit on ROWS rows, then apply to ROWS rows (what training and serving do);
- baselines: scikit-learn's `_sigmoid_calibration` (the fit behind `CalibratedClassifierCV(method="sigmoid")`)
  with the sigmoid applied, and `IsotonicRegression(out_of_bounds="clip")` fit + predict.
Prints the ratios specd / scikit-learn and the largest difference between the calibrated probabilities.

    .venv/bin/python -m tests.bench.bench_calibration [--rows 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from flows.training import calibration


def data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.01, 0.99, rows)
    return np.round(truth**3, 4), (rng.uniform(size=rows) < truth).astype(np.int64)


def _time(fn: Callable[[], np.ndarray], runs: int) -> tuple[list[float], np.ndarray]:
    times, out = [], np.empty(0)
    for _ in range(runs):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return times, out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    from sklearn.calibration import _sigmoid_calibration
    from sklearn.isotonic import IsotonicRegression

    p, y = data(args.rows)
    serve, _ = data(args.rows, seed=1)

    def sk_platt() -> np.ndarray:
        a, b = _sigmoid_calibration(calibration._logit(p), y)
        return 1 / (1 + np.exp(a * calibration._logit(serve) + b))

    def sk_isotonic() -> np.ndarray:
        return IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p, y).predict(serve)

    cases = {
        "platt": (lambda: calibration.apply(calibration.fit("platt", p, y), serve), sk_platt),
        "isotonic": (lambda: calibration.apply(calibration.fit("isotonic", p, y), serve), sk_isotonic),
    }
    results: dict[str, Any] = {"rows": args.rows, "runs": args.runs}
    print(f"calibration fit + apply on {args.rows} rows, {args.runs} runs (min / median / max seconds)")
    for name, (ours, theirs) in cases.items():
        ours_t, ours_out = _time(ours, args.runs)
        sk_t, sk_out = _time(theirs, args.runs)
        ratio = statistics.median(ours_t) / statistics.median(sk_t)
        difference = float(np.max(np.abs(ours_out - sk_out)))
        results[name] = {"specd": ours_t, "sklearn": sk_t, "ratio": ratio, "max_abs_difference": difference}
        print(f"  {name:<9} specd {min(ours_t):.3f} / {statistics.median(ours_t):.3f} / {max(ours_t):.3f}   "
              f"scikit-learn {min(sk_t):.3f} / {statistics.median(sk_t):.3f} / {max(sk_t):.3f}   "
              f"ratio {ratio:.2f}   max |difference| {difference:.2e}")
    return results


if __name__ == "__main__":
    main()
