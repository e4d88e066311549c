"""Drift statistics on known samples: a shifted sample drifts, an unshifted one does not, and the numbers
agree with closed forms (Wasserstein of a shift is the shift; chi² tail values from tables)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flows.monitoring.check import DriftSettings, check
from flows.monitoring.stats import (
    categorical_profile,
    chi2_sf,
    column_drift,
    drift_share,
    jensen_shannon,
    ks_pvalue,
    numeric_profile,
    wasserstein_normed,
)

RNG = np.random.default_rng(7)
REF = RNG.normal(44.0, 5.0, 20_000)


def test_wasserstein_of_a_shift_is_the_shift_over_std():
    ref = np.sort(REF)
    shifted = REF + 5.0
    assert wasserstein_normed(ref, shifted, float(ref.std())) == pytest.approx(5.0 / ref.std(), rel=1e-6)
    same = RNG.normal(44.0, 5.0, 5_000)
    assert wasserstein_normed(ref, same, float(ref.std())) < 0.05


def test_ks_pvalue_small_for_shift_and_large_for_same_distribution():
    ref = np.sort(REF)
    assert ks_pvalue(ref, RNG.normal(44.5, 5.0, 5_000)) < 1e-6
    assert ks_pvalue(ref, RNG.normal(44.0, 5.0, 5_000)) > 0.01


@pytest.mark.parametrize(("x", "df", "expected"), [(3.841, 1, 0.05), (5.991, 2, 0.05), (18.307, 10, 0.05), (2.706, 1, 0.10), (50.0, 3, 8.0e-11)])
def test_chi2_tail_matches_tables(x, df, expected):
    assert chi2_sf(x, df) == pytest.approx(expected, rel=2e-3)


def test_jensen_shannon_bounds():
    assert jensen_shannon(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0
    assert jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(math.sqrt(math.log(2)))


@pytest.mark.parametrize("method", ["wasserstein", "ks", "psi"])
def test_numeric_methods_flag_a_shift_only(method):
    profile = numeric_profile(REF)
    threshold = {"wasserstein": 0.1, "ks": 0.05, "psi": 0.1}[method]
    assert column_drift("x", profile, REF[:3000] + 5.0, method, threshold).drifted
    assert not column_drift("x", profile, RNG.normal(44.0, 5.0, 3000), method, threshold).drifted


@pytest.mark.parametrize("method", ["jensenshannon", "chisquare", "psi"])
def test_categorical_methods_flag_a_changed_mix_only(method):
    ref = RNG.choice(["Biscoe", "Dream", "Torgersen"], 10_000, p=[0.5, 0.35, 0.15]).tolist()
    profile = categorical_profile(ref)
    threshold = {"jensenshannon": 0.1, "chisquare": 0.05, "psi": 0.1}[method]
    moved = RNG.choice(["Biscoe", "Dream", "Torgersen"], 2000, p=[0.15, 0.35, 0.5]).tolist()
    same = RNG.choice(["Biscoe", "Dream", "Torgersen"], 2000, p=[0.5, 0.35, 0.15]).tolist()
    assert column_drift("island", profile, moved, method, threshold).drifted
    assert not column_drift("island", profile, same, method, threshold).drifted
    assert column_drift("island", profile, ["Unknown"] * 500, method, threshold).drifted  # a category never seen


def test_dataset_drift_share_and_reason():
    profiles = {"a": numeric_profile(REF), "b": numeric_profile(REF * 2), "c": categorical_profile(["x", "y"] * 500)}
    reference = {"features": ["a", "b", "c"], "columns": profiles, "target": categorical_profile(["0", "1"] * 500)}
    n = 1000
    current = {"a": (REF[:n] + 5).tolist(), "b": (REF[:n] * 2).tolist(), "c": ["x", "y"] * (n // 2), "__prediction__": ["1", "0"] * (n // 2)}
    settings = DriftSettings(features=(), target="y", drift_share=0.3)
    report = check("m", reference, current, settings, {"table": "t", "delta_version": 3})
    assert [c.column for c in report.drifted()] == ["a"]
    assert report.share == pytest.approx(1 / 3)
    assert report.dataset_drift
    assert report.drifted()[0].score == pytest.approx(1.0, abs=0.1)  # a 5-unit shift over a std of 5
    assert report.reason().startswith("features drifted: a 0.9") and "(> 0.1) — drift share 0.33 ≥ 0.3" in report.reason()
    assert not report.prediction.drifted
    assert drift_share(report.columns) == report.share
    quiet = check("m", reference, {**current, "a": REF[:n].tolist()}, settings, {})
    assert not quiet.dataset_drift and quiet.share == 0.0


def test_too_few_rows_gives_no_verdict():
    reference = {"features": ["a"], "columns": {"a": numeric_profile(REF)}, "target": categorical_profile(["0"])}
    report = check("m", reference, {"a": [99.0] * 50, "__prediction__": ["0"] * 50}, DriftSettings(features=(), target="y"), {})
    assert not report.enough_rows and not report.dataset_drift and report.columns == []
