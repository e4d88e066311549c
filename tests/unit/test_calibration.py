"""Probability calibration maths (flows/training/calibration.py), cross-checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from flows.training import calibration
from flows.training.metrics import calibration as ece_of


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True P(y=1) uniform on (0, 1); the model reports p**3 (badly under-confident on positives)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.01, 0.99, n)
    return truth**3, (rng.uniform(size=n) < truth).astype(np.int64)


def test_isotonic_matches_scikit_learn():
    from sklearn.isotonic import IsotonicRegression

    p, y = _miscalibrated(2000, 1)
    p = np.round(p, 3)  # ties, as a network's probabilities have them after rounding
    ours = calibration.fit("isotonic", p, y)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p, y)
    grid = np.concatenate([np.linspace(-0.1, 1.1, 301), p[:200]])
    np.testing.assert_allclose(calibration.apply(ours, grid), reference.predict(grid), atol=1e-9)


def test_platt_matches_scikit_learn_sigmoid_calibration():
    from sklearn.calibration import _sigmoid_calibration  # the fit behind CalibratedClassifierCV(method="sigmoid")

    p, y = _miscalibrated(2000, 2)
    ours = calibration.fit("platt", p, y)
    a, b = _sigmoid_calibration(calibration._logit(p), y)  # P = 1 / (1 + exp(a·f + b))
    assert ours["a"] == pytest.approx(-a, rel=1e-4) and ours["b"] == pytest.approx(-b, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_lowers_the_ece_of_a_miscalibrated_model_on_unseen_rows(method: str):
    fit_p, fit_y = _miscalibrated(3000, 3)
    test_p, test_y = _miscalibrated(3000, 4)
    calibrator = calibration.fit(method, fit_p, fit_y)
    before = ece_of(test_y, test_p)[1]
    after = ece_of(test_y, calibration.apply(calibrator, test_p))[1]
    assert before > 0.15 and after < 0.05 and after < before / 3, (before, after)
    monotone = calibration.apply(calibrator, np.linspace(0, 1, 101))
    assert np.all(np.diff(monotone) >= -1e-12) and monotone.min() >= 0 and monotone.max() <= 1


def test_one_class_is_refused_and_no_calibrator_is_the_identity():
    with pytest.raises(ValueError, match="both classes"):
        calibration.fit("platt", np.array([0.2, 0.4, 0.6]), np.array([1, 1, 1]))
    p = np.array([0.1, 0.5, 0.9])
    assert calibration.apply(None, p).tolist() == p.tolist()


def test_split_rows_is_seeded_and_disjoint():
    rows = np.arange(100)
    train, held = calibration.split_rows(rows, 0.2, 7)
    again = calibration.split_rows(rows, 0.2, 7)
    assert len(held) == 20 and not set(train) & set(held) and set(train) | set(held) == set(rows)
    assert train.tolist() == again[0].tolist() and held.tolist() == again[1].tolist()


def test_spec_declares_calibration_for_binary_models_only():
    from pydantic import ValidationError

    from daemon.schema.model import ModelSpec, resolve_candidate
    from tests.helpers.models import small_spec

    spec = ModelSpec.model_validate(small_spec(calibration={"method": "isotonic"}))
    assert resolve_candidate(spec, [])[0]["calibration"] == {"method": "isotonic", "fraction": 0.2}
    plain = ModelSpec.model_validate(small_spec())
    assert "calibration" not in resolve_candidate(plain, [])[0]  # candidate fingerprints of other models unchanged
    with pytest.raises(ValidationError, match="calibration"):
        ModelSpec.model_validate(small_spec(calibration={"method": "sigmoid"}))
    with pytest.raises(ValidationError, match="calibration"):
        ModelSpec.model_validate(small_spec(task="regression", data__target="body_mass_g", promotion={"metric": "mae"},
                                            calibration={"method": "platt"}))
