"""`specd ab` statistics: intervals, tests, the sequential p-value, power, SRM, and the one-query analysis."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from bentos.ab_html import to_html
from bentos.ab_report import (
    Moments,
    always_valid_p,
    analyse,
    build_report,
    chi_square_sf,
    mean_difference,
    query,
    render,
    required_sample,
    rows_to_tables,
    sample_ratio_mismatch,
    two_proportion_z,
    wilson_interval,
)


def test_wilson_interval_known_values():
    low, high = wilson_interval(81, 263)  # textbook example: 0.2553 .. 0.3662
    assert low == pytest.approx(0.2553, abs=1e-3) and high == pytest.approx(0.3662, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_two_proportion_z_test():
    z, p = two_proportion_z(90, 100, 70, 100)  # pooled p=0.8, se=0.0566 -> z=-3.54
    assert z == pytest.approx(-3.5355, abs=1e-3) and p == pytest.approx(0.000407, rel=0.05)
    assert two_proportion_z(50, 100, 50, 100) == (0.0, 1.0)


def test_moments_and_welch_difference():
    a = Moments(4, 10.0, 30.0)  # values 1,2,3,4: mean 2.5, variance 5/3
    b = Moments(4, 14.0, 54.0)  # values 2,3,4,5
    assert a.mean == 2.5 and a.variance == pytest.approx(5 / 3)
    difference, se = mean_difference(a, b)
    assert difference == pytest.approx(1.0) and se == pytest.approx(math.sqrt(2 * (5 / 3) / 4))


@pytest.mark.parametrize(("statistic", "dof", "expected"), [
    (3.841458820694124, 1, 0.05), (5.991464547107979, 2, 0.05), (11.344866730144373, 3, 0.01), (0.5, 4, 0.9735009788),
    (30.0, 10, 0.000856641211), (0.0, 3, 1.0),
])
def test_chi_square_survival_matches_tables(statistic, dof, expected):
    assert chi_square_sf(statistic, dof) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_sample_ratio_mismatch_flags_a_broken_split():
    assert sample_ratio_mismatch({"champion": 9000, "challenger": 1000}, {"champion": 0.9, "challenger": 0.1})[1] > 0.5
    chi2, p = sample_ratio_mismatch({"champion": 8800, "challenger": 1200}, {"champion": 0.9, "challenger": 0.1})
    assert chi2 == pytest.approx(44.444, rel=1e-3) and p < 1e-9
    assert sample_ratio_mismatch({"champion": 10}, {"champion": 1.0}) is None  # one live variant: nothing to check


def test_required_sample_matches_the_textbook_formula():
    # p=0.5 vs 0.55, alpha 0.05, power 0.8: (1.95996+0.84162)^2 * (0.25+0.2475) / 0.05^2 = 1561.9 -> 1562
    assert required_sample(0.25, 0.2475, 0.05, 0.05) == 1562
    assert required_sample(0.25, 0.25, 0.0, 0.05) is None


def _aa_looks(rng: random.Random, looks: int, per_look: int) -> list[tuple[float, float]]:
    a = b = Moments(0, 0.0, 0.0)
    out = []
    for _ in range(looks):
        hits_a = sum(rng.random() < 0.5 for _ in range(per_look))
        hits_b = sum(rng.random() < 0.5 for _ in range(per_look))
        a = Moments(a.n + per_look, a.total + hits_a, a.total_sq + hits_a)
        b = Moments(b.n + per_look, b.total + hits_b, b.total_sq + hits_b)
        out.append(mean_difference(a, b))
    return out


def test_always_valid_p_keeps_false_positives_down_under_repeated_looks():
    """A/A tests looked at 30 times: naive 'any look significant' fires far above 5 %, mSPRT stays below it."""
    rng = random.Random(7)
    runs, naive, sequential = 200, 0, 0
    for _ in range(runs):
        looks = _aa_looks(rng, 30, 50)
        naive += any(abs(d / se) > 1.96 for d, se in looks if se > 0)
        sequential += always_valid_p(looks, tau=0.05) < 0.05
    assert naive / runs > 0.15  # peeking inflates the false-positive rate
    assert sequential / runs <= 0.05


def test_always_valid_p_detects_a_real_lift():
    rng = random.Random(3)
    a = b = Moments(0, 0.0, 0.0)
    looks = []
    for _ in range(20):
        hits_a = sum(rng.random() < 0.70 for _ in range(200))
        hits_b = sum(rng.random() < 0.80 for _ in range(200))
        a = Moments(a.n + 200, a.total + hits_a, a.total_sq + hits_a)
        b = Moments(b.n + 200, b.total + hits_b, b.total_sq + hits_b)
        looks.append(mean_difference(a, b))
    assert always_valid_p(looks, tau=0.05) < 0.001


def _log(n: int, start: datetime, accuracy: dict[str, float], split: float = 0.75, seed: int = 1):
    rng = random.Random(seed)
    predictions, feedback = [], []
    for i in range(n):
        variant = "champion" if rng.random() < split else "challenger"
        ts = start + timedelta(minutes=i)
        predictions.append({"request_id": f"r{i}", "row": 0, "ts": ts, "variant": variant, "model_tag": f"m:{variant}",
                            "routing_fingerprint": "fp", "prediction": "male", "probability": 0.7, "latency_ms": float(i % 10)})
        right = rng.random() < accuracy[variant]
        feedback.append({"request_id": f"r{i}", "row": 0, "ts": ts + timedelta(seconds=5), "label": "male" if right else "female"})
    return predictions, feedback


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
    assert challenger.p_value < 0.01 and challenger.z < 0 and challenger.better is False
    assert challenger.lift == pytest.approx(challenger.value - champion.value)
    assert challenger.lift_ci[0] < challenger.lift < challenger.lift_ci[1] < 0


def test_latest_feedback_wins_and_window_filters():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    predictions, feedback = _log(400, start, {"champion": 0.8, "challenger": 0.8})
    # a correction for r0 arrives later: label flips to the prediction
    feedback.append({"request_id": "r0", "row": 0, "ts": start + timedelta(days=3), "label": "male"})
    p, f = rows_to_tables(predictions, feedback)
    totals, buckets = query(p, f, since=(start + timedelta(minutes=100)).isoformat(), bucket="1 hour", routing_fingerprint="fp")
    assert sum(r["requests"] for r in totals) == 300  # 100 of 400 minutes fall before the window
    assert {b["bucket"][:13] for b in buckets} == {"2026-11-01T01", "2026-11-01T02", "2026-11-01T03", "2026-11-01T04",
                                                 "2026-11-01T05", "2026-11-01T06"}
    totals_all, _ = query(p, f)
    report = build_report("svc", totals_all, [], champion="champion")
    hits_with_correction = sum(r["hits"] for r in totals_all)
    assert hits_with_correction == sum(1 for x in feedback[:400] if x["label"] == "male") + (feedback[0]["label"] != "male")
    assert report.variants[0].variant == "champion"


def test_regression_reports_mae_and_lower_is_better():
    predictions = [{"request_id": f"r{i}", "row": 0, "variant": "champion" if i % 2 else "challenger", "model_tag": "m:a",
                    "prediction": str(float(i)), "probability": None, "latency_ms": 1.0} for i in range(40)]
    feedback = [{"request_id": f"r{i}", "row": 0, "label": str(i + (1.0 if i % 2 else 0.5)), "ts": "1"} for i in range(40)]
    champion, challenger = analyse(predictions, feedback)
    assert champion.metric == "mae" and champion.value == pytest.approx(1.0) and not math.isnan(champion.ci_high)
    assert challenger.value == pytest.approx(0.5) and challenger.better is True


def test_full_report_with_srm_power_and_html():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    predictions, feedback = _log(3000, start, {"champion": 0.70, "challenger": 0.80}, split=0.6)
    p, f = rows_to_tables(predictions, feedback)
    totals, buckets = query(p, f, bucket="6 hours", routing_fingerprint="fp")
    current = {r["variant"]: int(r["current_requests"]) for r in totals}
    report = build_report("svc", totals, buckets, weights={"champion": 0.9, "challenger": 0.1}, current_counts=current,
                          window=(start.isoformat(), None), bucket="6 hours")
    assert report.srm is not None and report.srm["mismatch"]  # 60/40 served against 90/10 weights
    challenger = report.variants[1]
    assert challenger.always_valid_p < 0.05 and challenger.better
    assert challenger.required_per_variant is not None and challenger.needs_more == 0
    assert len([s for s in report.series if s["variant"] == "challenger"]) == 9  # 3000 minutes = 50 h → 9 buckets of 6 h
    text = render(report)
    assert "MISMATCH" in text and "always-valid p=" in text and "lift +0.1" in text
    page = to_html(report)
    assert page.startswith("<!doctype html>") and "<svg" in page and "<polygon" in page and "http" not in page.split("<svg", 1)[0].split("<style>")[0]
