"""specd's ROC/PR/calibration metrics (flows/training/metrics.py) agree with scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics  # test extras only: the cross-check reference

from flows.training.metrics import average_precision, binary_metrics, calibration, roc_auc


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, False)])
def test_auc_average_precision_and_calibration_match_scikit_learn(seed: int, ties: bool):
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(seed)
    y = (rng.random(2000) < 0.4).astype(np.int64)
    p = np.clip(0.4 + 0.3 * (y - 0.4) + rng.normal(0, 0.2, y.size), 0, 1)
    if ties:
        p = np.round(p, 1)  # many tied scores
    assert roc_auc(y, p) == pytest.approx(sklearn_metrics.roc_auc_score(y, p), abs=1e-12)
    assert average_precision(y, p) == pytest.approx(sklearn_metrics.average_precision_score(y, p), abs=1e-12)
    curve, ece = calibration(y, p, bins=10)
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert [c[1] for c in curve] == pytest.approx(list(observed), abs=1e-12)
    assert [c[0] for c in curve] == pytest.approx(list(predicted), abs=1e-12)
    counts = np.array([c[2] for c in curve])
    assert ece == pytest.approx(float(np.sum(np.abs(observed - predicted) * counts) / y.size), abs=1e-12)
    assert counts.sum() == y.size


def test_a_calibrated_model_has_a_small_ece_and_an_overconfident_one_a_large_one():
    rng = np.random.default_rng(3)
    p = rng.random(20000)
    y = (rng.random(p.size) < p).astype(np.int64)  # calibrated by construction
    _, ece = calibration(y, p)
    _, overconfident = calibration(y, np.where(p > 0.5, 1.0, 0.0))
    assert ece < 0.02 and overconfident > 0.2


def test_binary_metrics_carry_the_curves():
    rng = np.random.default_rng(4)
    y = (rng.random(500) < 0.5).astype(np.int64)
    p = np.clip(y * 0.6 + rng.random(500) * 0.4, 0, 1)
    m = binary_metrics(y, p)
    assert {"pr_curve", "calibration_curve", "ece", "average_precision", "roc_curve"} <= set(m)
    recalls = [r for r, _, _ in m["pr_curve"]]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0
    precision, _, _ = sklearn_metrics.precision_recall_curve(y, p)
    assert min(pr for _, pr, _ in m["pr_curve"]) == pytest.approx(float(precision.min()), abs=1e-9)


def test_models_report_writes_self_contained_html_with_curves_and_ece(tmp_path, monkeypatch):
    import re
    import subprocess
    import sys

    from daemon.shared.paths import bentoml_home
    from flows.training.registry import Release, write_release
    from tests.conftest import ROOT

    rng = np.random.default_rng(5)
    y = (rng.random(400) < 0.5).astype(np.int64)
    good = binary_metrics(y, np.clip(y * 0.5 + rng.random(400) * 0.5, 0, 1))
    weak = binary_metrics(y, rng.random(400))
    home = tmp_path / "home"
    write_release(Release("penguin_sex", "fp" * 8, "penguin_sex:a-1", ("penguin_sex:b-2",), "promoted a", "sha",
                          candidates={"a": {"tag": "penguin_sex:a-1", "status": "trained", "metrics": good},
                                      "b": {"tag": "penguin_sex:b-2", "status": "trained", "metrics": weak}}),
                  root=bentoml_home(home))
    report = tmp_path / "models.html"
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "models", "--home", str(home), "--report", str(report)],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert f"ece {good['ece']:.4f}" in out.stdout
    text = report.read_text()
    assert text.count("<svg") == 3 and text.count("<polyline") >= 3 * 2  # ROC, PR, calibration; one line per candidate
    assert not re.search(r"(src|href)=|<script|@import|url\(", text)  # self-contained: no external asset
    assert f"{good['ece']:.4f}" in text and f"{weak['roc_auc']:.4f}" in text
