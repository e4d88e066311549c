"""Drift as a retrain trigger, through the real model adapter: real Delta tables and prediction log, real
Lightning training, real BentoML store.

One scenario (training is the expensive part): train the example model with `monitoring:`; a no-drift
prediction log (the training rows resampled) plans nothing; the same number of rows with bill length + 5 mm
plans an UPDATE that names the feature; applying it retrains on the table's new Delta version and records
it; the retrained model is judged on fresh traffic only, so nothing more is planned.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.adapters.models.adapter import ModelAdapter
from daemon.adapters.models.drift import drift_dir
from daemon.core.graph import Graph
from daemon.core.plan import Op, make_plan
from flows.training import registry
from tests.helpers.models import (
    REPO,
    context,
    gold_uri,
    model_resource,
    plan_and_apply,
    small_spec,
    write_penguin_table,
)

pytestmark = pytest.mark.integration
ROWS = 2000
FEATURES = ("species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year")


def _write_log(home: Path, tag: str, shift_mm: float, seed: int) -> None:
    """ROWS logged predictions of `tag`, features drawn from the training table (bill length + shift_mm)."""
    from deltalake import DeltaTable, write_deltalake

    from bentos.ab_report import rows_to_tables

    table = DeltaTable(gold_uri(home)).to_pyarrow_table().to_pylist()
    rng = np.random.default_rng(seed)
    rows = []
    now = datetime.now(UTC)
    for i, index in enumerate(rng.integers(0, len(table), ROWS)):
        source = table[int(index)]
        features: dict[str, Any] = {name: source[name] for name in FEATURES}
        features["bill_length_mm"] = features["bill_length_mm"] + shift_mm
        rows.append({"request_id": f"r{seed}-{i}", "row": 0, "ts": now, "service": "penguin_api", "variant": "champion",
                     "model_tag": tag, "prediction": str(source["is_male"]), "probability": 0.5, "latency_ms": 1.0,
                     "features": json.dumps(features)})
    predictions, _ = rows_to_tables(rows, [])
    write_deltalake(str(home / "lake" / "predictions" / "penguin_api"), predictions, mode="overwrite")


def _plan(adapter: ModelAdapter, resource: Any):
    observed = adapter.observe([resource])
    return make_plan("rev", "test", Graph((resource,)), observed, describe=adapter.describe), observed


def test_shifted_traffic_plans_a_retrain_and_no_drift_plans_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from prometheus_client import REGISTRY

    home = tmp_path / "home"
    write_penguin_table(gold_uri(home))
    adapter = ModelAdapter(context(home))
    monitoring = {"retrain_on_drift": True, "drift_share": 0.1, "interval_s": 1, "window": {"min_rows": 500}}
    resource = model_resource(small_spec(monitoring=monitoring, trainer__epochs=5))
    plan, _ = plan_and_apply(adapter, [resource])
    assert [a.op for a in plan.actions] == [Op.CREATE]
    first = registry.current_release("penguin_sex", adapter.root)
    assert first.champion and first.data["delta_version"] == 0

    # no drift: the training rows resampled, ROWS of them
    _write_log(home, first.champion, 0.0, seed=1)
    plan, observed = _plan(adapter, resource)
    assert [a.op for a in plan.actions] == [Op.UNCHANGED], plan.to_text()
    live = observed["model/penguin_sex"]
    assert live.drift == () and live.details["drift_rows"] == ROWS and live.details["drift_share"] < 0.1
    assert REGISTRY.get_sample_value("specd_model_drift_share", {"model": "penguin_sex"}) < 0.1
    references = sorted((drift_dir(home) / "penguin_sex").glob("reference-*.json"))
    assert len(references) == 1
    cached_at = references[0].stat().st_mtime_ns

    # shifted traffic of the same size: bill length + 5 mm
    time.sleep(1.1)  # past monitoring.interval_s: the next observe checks again
    _write_log(home, first.champion, 5.0, seed=2)
    plan, observed = _plan(adapter, resource)
    (action,) = plan.actions
    assert action.op == Op.UPDATE, plan.to_text()
    live = observed["model/penguin_sex"]
    assert live.drift and live.drift[0].startswith("production drift: features drifted: bill_length_mm ")
    assert "(> 0.1)" in live.drift[0] and "retrain on the table's latest data version" in action.summary
    assert "bill_length_mm" in action.summary and "bill_depth_mm" not in live.drift[0]
    score = REGISTRY.get_sample_value("specd_model_feature_drift", {"model": "penguin_sex", "feature": "bill_length_mm"})
    assert score > 0.5  # 5 mm over a std of ~5.5 mm
    assert REGISTRY.get_sample_value("specd_model_drift_share", {"model": "penguin_sex"}) >= 1 / len(FEATURES) - 1e-9
    assert references[0].stat().st_mtime_ns == cached_at  # the reference profile was not recomputed
    # a cached verdict is re-read (not recomputed) inside the interval: same plan
    plan_again, _ = _plan(adapter, resource)
    assert plan_again.actions[0].op == Op.UPDATE

    # `specd drift`: the daemon's last verdict, and a fresh check against the repository's spec (default monitoring)
    from daemon.cli.main import main

    report_file = tmp_path / "drift.html"
    assert main(["drift", "penguin_sex", "--home", str(home), "--cached", "--json", "--report", str(report_file)]) == 0
    cached = json.loads(capsys.readouterr().out)
    assert cached["dataset_drift"] and [c["column"] for c in cached["columns"] if c["drifted"]] == ["bill_length_mm"]
    assert "bill_length_mm" in report_file.read_text() and "DRIFT" in report_file.read_text()
    assert main(["drift", "penguin_sex", "--home", str(home), "--repo", str(REPO)]) == 0
    text = capsys.readouterr().out
    assert "bill_length_mm" in text and "DRIFTED" in text and "no dataset drift" in text  # 1 of 7 < the default share 0.5

    # new data arrives (Delta version 1); applying the drift UPDATE retrains on it and records it
    write_penguin_table(gold_uri(home))
    outcome = adapter.apply(action, resource)
    second = registry.current_release("penguin_sex", adapter.root)
    assert second.data["delta_version"] == 1, outcome.message
    assert second.created_at > first.created_at and second.fingerprint == resource.fingerprint
    assert second.champion is not None

    # the retrained model has no traffic of its own yet: no verdict, nothing planned (no retrain loop)
    time.sleep(1.1)
    plan, observed = _plan(adapter, resource)
    assert [a.op for a in plan.actions] == [Op.UNCHANGED], plan.to_text()
    assert observed["model/penguin_sex"].details["drift_rows"] == 0
