"""`specd ab` statistics: Wilson intervals, two-proportion z-test, per-variant analysis."""

from __future__ import annotations

import math

import pytest

from daemon.cli.ab import analyse, quantile, render, two_proportion_z, welch_z, wilson_interval


def test_wilson_interval_known_values():
    low, high = wilson_interval(81, 263)  # textbook example: 0.2553 .. 0.3662
    assert low == pytest.approx(0.2553, abs=1e-3) and high == pytest.approx(0.3662, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_two_proportion_z_test():
    z, p = two_proportion_z(90, 100, 70, 100)  # pooled p=0.8, se=0.0566 -> z=-3.54
    assert z == pytest.approx(-3.5355, abs=1e-3) and p == pytest.approx(0.000407, rel=0.05)
    assert two_proportion_z(50, 100, 50, 100) == (0.0, 1.0)
    z, p = welch_z([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert z == 0.0 and p == 1.0


def test_quantile():
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([], 0.5) is None
    assert quantile([0.0, 10.0], 0.99) == pytest.approx(9.9)


def test_analyse_joins_feedback_by_request_and_row():
    predictions, feedback = [], []
    for i in range(200):
        variant = "champion" if i % 4 else "challenger"
        predictions.append({"request_id": f"r{i}", "row": 0, "variant": variant, "model_tag": f"m:{variant}",
                            "prediction": "male", "probability": 0.7, "latency_ms": float(i % 10)})
        if i < 100:  # champion right 90 %, challenger right 50 %
            right = (i % 10 != 0) if variant == "champion" else (i % 8 == 0)
            feedback.append({"request_id": f"r{i}", "row": 0, "label": "male" if right else "female", "ts": "1"})
    reports = analyse(predictions, feedback)
    assert [r.variant for r in reports] == ["champion", "challenger"]
    champion, challenger = reports
    assert (champion.requests, challenger.requests) == (150, 50)
    assert champion.metric == "accuracy" and champion.feedback == 75
    assert champion.ci_low < champion.value < champion.ci_high
    assert challenger.value == pytest.approx(0.52, abs=0.01)
    assert challenger.p_value < 0.01 and challenger.z < 0  # worse than the champion, significantly
    text = render("svc", reports)
    assert "significant at 0.05" in text and "challenger" in text


def test_regression_reports_mae():
    predictions = [{"request_id": f"r{i}", "row": 0, "variant": "champion", "model_tag": "m:a", "prediction": str(float(i)),
                    "probability": None, "latency_ms": 1.0} for i in range(10)]
    feedback = [{"request_id": f"r{i}", "row": 0, "label": str(i + 1.0), "ts": "1"} for i in range(10)]
    (report,) = analyse(predictions, feedback)
    assert report.metric == "mae" and report.value == pytest.approx(1.0) and not math.isnan(report.ci_high)
