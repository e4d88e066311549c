"""The model dashboard's quality row: ECE per candidate and the held-out ROC, PR and calibration curves as
`specd_model_curve` series the daemon sets after each training."""

from __future__ import annotations

import numpy as np
from prometheus_client import REGISTRY

from daemon.adapters.models import metrics as models_metrics
from daemon.schema.promql import check_instant_query
from dashboards.panels import model_dashboard
from flows.training.metrics import binary_metrics


def _queries(board: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in board["rows"]:
        for panel in row["panels"]:
            out[panel["title"]] = [panel["expr"]] if "expr" in panel else [q["expr"] for q in panel["queries"]]
    return out


def test_binary_models_get_a_quality_row_with_ece_and_the_three_curves():
    queries = _queries(model_dashboard("churn", {"task": "binary"}))
    assert queries["Expected calibration error by candidate"] == ['specd_model_candidate_metric{model="churn",metric=~"ece|ece_uncalibrated"}']
    curves = {title: q[0] for title, q in queries.items() if "curve" in title.lower()}
    assert sorted(curves.values()) == sorted(f'specd_model_curve{{curve="{c}",model="churn"}}' for c in ("roc", "pr", "calibration"))
    for expr in (*curves.values(), *queries["Expected calibration error by candidate"]):
        check_instant_query(expr)
    regression = _queries(model_dashboard("price", {"task": "regression"}))
    assert not [t for t in regression if "curve" in t.lower() or "calibration" in t.lower()]


def test_recorded_curves_are_the_candidates_held_out_points_and_replace_the_old_ones():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    probability = np.clip(0.35 * y + rng.uniform(0, 0.65, 400), 0, 1)
    metrics = binary_metrics(y, probability)
    models_metrics.record_candidate("curvy", "a", metrics, 1.0)

    def series(curve: str) -> dict[str, float]:
        return {s.labels["x"]: s.value for m in REGISTRY.collect() if m.name == "specd_model_curve" for s in m.samples
                if s.labels["model"] == "curvy" and s.labels["candidate"] == "a" and s.labels["curve"] == curve}

    calibration = series("calibration")
    assert calibration == {f"{x:.3f}": observed for x, observed, *_ in metrics["calibration_curve"]}
    roc = series("roc")
    assert roc["1.000"] == 1.0 and len(roc) >= 5 and all(0 <= v <= 1 for v in roc.values())
    assert series("pr") and REGISTRY.get_sample_value("specd_model_candidate_metric",
                                                      {"model": "curvy", "candidate": "a", "metric": "ece"}) == metrics["ece"]
    models_metrics.record_candidate("curvy", "a", {"accuracy": 0.5}, None)  # retrained without curves: old points gone
    assert series("roc") == {} and series("calibration") == {}
