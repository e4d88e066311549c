"""Pure parts of the model kind: promotion rule, metrics, fitted preprocessing, releases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flows.training import preprocess, registry
from flows.training.metrics import evaluate, roc_auc
from flows.training.promote import Rule, decide

RULE = Rule("roc_auc", True, 0.01, [{"metric": "accuracy", "min": 0.7},
                                   {"metric": "demographic_parity_difference", "attribute": "island", "max": 0.2}])


def _cand(tag: str, auc: float, acc: float = 0.9, dpd: float = 0.1, status: str = "trained") -> dict:
    return {"tag": tag, "status": status, "metrics": {"roc_auc": auc, "accuracy": acc,
                                                        "fairness": {"island": {"demographic_parity_difference": dpd}}}}


@pytest.mark.parametrize(
    ("candidates", "champion", "champion_auc", "expected_champion", "outcome", "reason_part"),
    [
        ({"a": _cand("m:a", 0.9)}, None, None, "m:a", "promoted", "no previous champion"),
        ({"a": _cand("m:a", 0.9), "b": _cand("m:b", 0.95)}, None, None, "m:b", "promoted", "promoted b"),
        ({"b": _cand("m:b", 0.905)}, "m:old", 0.9, "m:old", "kept", "improvement +0.0050"),
        ({"b": _cand("m:b", 0.95)}, "m:old", 0.9, "m:b", "promoted", "vs champion 0.9000"),
        ({"b": _cand("m:b", 0.99, acc=0.5)}, "m:old", 0.9, "m:old", "kept", "accuracy 0.500 < 0.7"),
        ({"b": _cand("m:b", 0.99, dpd=0.5)}, "m:old", 0.9, "m:old", "kept", "demographic_parity_difference[island]"),
        ({"b": _cand("m:b", 0.99, status="diverged")}, "m:old", 0.9, "m:old", "kept", "b diverged"),
        ({"b": _cand("m:b", 0.99, status="diverged")}, None, None, None, "none", "no champion"),
    ],
)
def test_decide(candidates, champion, champion_auc, expected_champion, outcome, reason_part) -> None:
    metrics = {"roc_auc": champion_auc} if champion_auc is not None else None
    decision = decide(RULE, candidates, champion, metrics)
    assert decision.champion == expected_champion
    assert decision.outcome == outcome
    assert reason_part in decision.reason


def test_minimize_metric_and_challengers() -> None:
    rule = Rule("rmse", False, 0.0)
    decision = decide(rule, {"a": {"tag": "m:a", "status": "trained", "metrics": {"rmse": 2.0}},
                             "b": {"tag": "m:b", "status": "trained", "metrics": {"rmse": 1.0}}}, "m:a", {"rmse": 2.0})
    assert decision.champion == "m:b" and decision.challengers == ("m:a",)


def test_metrics_against_hand_computed_values() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    assert roc_auc(y, p) == pytest.approx(0.75)
    m = evaluate("binary", y, p, {"g": ["x", "x", "y", "y"]})
    assert m["accuracy"] == 0.5 and m["confusion_matrix"] == [[1, 1], [1, 1]]
    assert m["per_group"]["g"]["x"]["selection_rate"] == 0.5
    assert m["fairness"]["g"]["demographic_parity_difference"] == pytest.approx(0.0)
    assert m["fairness"]["g"]["equal_opportunity_difference"] == pytest.approx(0.0)  # x has no positives
    r = evaluate("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert r["mae"] == pytest.approx(1 / 3) and r["rmse"] == pytest.approx((1 / 3) ** 0.5) and r["r2"] == pytest.approx(0.5)
    mc = evaluate("multiclass", np.array([0, 1, 2]), np.eye(3))
    assert mc["accuracy"] == 1.0 and mc["f1"] == 1.0


def test_preprocessing_is_fitted_on_training_rows_only() -> None:
    train = {"x": np.array([1.0, 2.0, 3.0, np.nan]), "c": ["a", "b", "a", None]}
    schema = {"x": "float64", "c": "string"}
    state = preprocess.fit(train, schema, {"x": {"impute": "median", "scale": "minmax"}, "c": {"encode": "onehot"}})
    out = preprocess.transform(state, {"x": [3.0, None, 10.0], "c": ["b", "zzz", None]})
    assert preprocess.output_names(state) == ["x", "c=a", "c=b"]
    np.testing.assert_allclose(out[:, 0], [1.0, 0.5, 4.5])  # min 1, range 2 from training; NaN → median 2
    np.testing.assert_allclose(out[:, 1:], [[0, 1], [0, 0], [1, 0]])  # unseen → zeros; missing → most frequent "a"
    freq = preprocess.fit(train, schema, {"x": {"scale": "robust"}, "c": {"encode": "frequency"}})
    assert preprocess.transform(freq, {"x": [2.0], "c": ["a"]})[0, 1] == pytest.approx(0.75)


def test_releases_are_atomic_and_restorable(tmp_path: Path) -> None:
    r1 = registry.write_release(registry.Release("m", "f1", "m:a-1", (), "promoted a", "sha1"), tmp_path)
    registry.write_release(registry.Release("m", "f2", "m:b-2", ("m:a-1",), "promoted b", "sha2"), tmp_path)
    assert registry.current_release("m", tmp_path).champion == "m:b-2"
    registry.set_current("m", "f1", tmp_path)
    assert registry.current_release("m", tmp_path) == r1
    assert [r.fingerprint for r in registry.list_releases("m", tmp_path)] == ["f1", "f2"]
    assert not list((tmp_path / "specd-releases" / "m").glob(".*tmp"))
    with pytest.raises(KeyError):
        registry.set_current("m", "nope", tmp_path)
    assert registry.list_models(tmp_path) == ["m"]


@pytest.mark.parametrize(("challenger", "expected"), [(0.9, "(no improvement)"), (0.88, "(worse by 0.02)")])
def test_kept_message_without_a_required_margin(challenger: float, expected: str) -> None:
    rule = Rule("roc_auc", True, 0.0)
    decision = decide(rule, {"b": {"tag": "m:b", "status": "trained", "metrics": {"roc_auc": challenger}}}, "m:old", {"roc_auc": 0.9})
    assert decision.outcome == "kept" and expected in decision.reason, decision.reason
    assert "required" not in decision.reason


def test_promotion_by_a_minimized_metric_against_the_champion() -> None:
    rule = Rule("rmse", False, 10.0)
    better = decide(rule, {"b": {"tag": "m:b", "status": "trained", "metrics": {"rmse": 280.0}}}, "m:a", {"rmse": 300.0})
    assert better.champion == "m:b" and "(+20.0000 ≥ 10)" in better.reason
    marginal = decide(rule, {"b": {"tag": "m:b", "status": "trained", "metrics": {"rmse": 295.0}}}, "m:a", {"rmse": 300.0})
    assert marginal.champion == "m:a" and "improvement +5.0000 < required 10" in marginal.reason


def test_cv_text_shows_the_promotion_metric_mean_and_spread() -> None:
    from daemon.cli.models import cv_text

    cv = {"folds": 3, "accuracy": {"mean": 0.9, "std": 0.01}, "f1": {"mean": 0.85, "std": 0.02}}
    assert cv_text(cv, "f1") == "cv f1 0.8500 ± 0.0200 (3 folds)"
    assert cv_text(cv, None) == "cv accuracy 0.9000 ± 0.0100 (3 folds)"
    assert cv_text({}, "f1") == ""
