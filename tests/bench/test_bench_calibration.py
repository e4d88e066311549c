"""CI-size run of the calibration benchmark: asserts that specd's calibrators give scikit-learn's answers."""

from __future__ import annotations

from tests.bench import bench_calibration


def test_calibration_bench_tiny_matches_scikit_learn():
    results = bench_calibration.main(["--rows", "5000", "--runs", "3"])
    for name in ("platt", "isotonic"):
        assert len(results[name]["specd"]) == 3 and results[name]["ratio"] > 0
        assert results[name]["max_abs_difference"] < 1e-4, results[name]
