"""End to end through the model adapter on CPU: real Delta, real Lightning training, real BentoML store.

One scenario in sequence (training is the expensive part, so steps share it): train + promote, a second
apply trains nothing, a worse challenger is not promoted, a diverging candidate is rejected cleanly, and
reverting the spec restores the earlier release without training.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.adapters.models.adapter import ModelAdapter
from daemon.core.plan import Op
from flows.training import registry
from tests.helpers.models import (
    GOLD,
    context,
    gold_uri,
    model_resource,
    plan_and_apply,
    small_spec,
    write_penguin_table,
)

pytestmark = pytest.mark.integration


def _logs(home: Path) -> dict[str, int]:
    """Training/scoring process logs with their modification times: a started process rewrites its log."""
    return {str(p): p.stat().st_mtime_ns for p in (home / "logs" / "training").rglob("*.log")}


def test_train_promote_reuse_reject_and_restore(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    from flows.training.artifact import load_predictor, read_model_info

    home = tmp_path / "home"
    write_penguin_table(gold_uri(home))
    adapter = ModelAdapter(context(home, max_concurrent_candidates=2))
    root = adapter.root

    # 1. create: train, evaluate, promote the only qualifying candidate
    v1 = model_resource(small_spec())
    plan, outcomes = plan_and_apply(adapter, [v1])
    assert [a.op for a in plan.actions] == [Op.CREATE]
    assert "train candidate a on CPU" in plan.actions[0].summary
    release = registry.current_release("penguin_sex", root)
    assert release is not None and release.fingerprint == v1.fingerprint
    champion = release.champion
    assert champion and champion.startswith("penguin_sex:a-")
    assert release.data["delta_version"] == 0
    metrics = release.candidates["a"]["metrics"]
    assert metrics["roc_auc"] > 0.85 and metrics["accuracy"] >= 0.75
    assert "island" in metrics["fairness"]
    assert outcomes[0].details["trained"] == ["a"]
    info = read_model_info(champion, root)
    assert info["labels"]["specd.model"] == "penguin_sex" and info["labels"]["specd.delta_version"] == "0"
    assert info["labels"]["specd.table"] == GOLD and info["labels"]["specd.git_sha"] == "rev1"
    assert v1.fingerprint in info["decisions"]
    predictor = load_predictor(champion, root)
    assert list(predictor.feature_schema)[:3] == ["species", "island", "bill_length_mm"]
    out = predictor.predict({"species": ["Gentoo"], "island": ["Biscoe"], "bill_length_mm": [50.0], "bill_depth_mm": [16.0],
                             "flipper_length_mm": [225.0], "body_mass_g": [5700.0], "year": [2008]})
    assert out["prediction"] in ([0], [1]) and 0.0 <= out["probability"][0] <= 1.0
    assert (home / "logs" / "tensorboard" / "penguin_sex").is_dir()
    assert REGISTRY.get_sample_value("specd_model_candidate_metric", {"model": "penguin_sex", "candidate": "a", "metric": "roc_auc"}) == pytest.approx(metrics["roc_auc"])
    version = champion.split(":")[1]
    assert REGISTRY.get_sample_value("specd_model_champion_info", {"model": "penguin_sex", "candidate": "a", "version": version}) == 1.0

    # 2. same spec again: nothing to do, nothing trained
    logs_before = _logs(home)
    plan, outcomes = plan_and_apply(adapter, [v1])
    assert [a.op for a in plan.actions] == [Op.UNCHANGED] and outcomes == []
    assert _logs(home) == logs_before

    # 3. a worse challenger: trained alone (a is reused and re-scored), not promoted
    v2 = model_resource(small_spec(candidates={"a": [], "weak": ["trainer.epochs=1", "optim.lr=0.0001", "model.hidden=[2]"]}))
    plan, outcomes = plan_and_apply(adapter, [v2])
    assert [a.op for a in plan.actions] == [Op.UPDATE]
    assert outcomes[0].details["trained"] == ["weak"] and outcomes[0].details["reused"] == ["a"]
    release = registry.current_release("penguin_sex", root)
    assert release.fingerprint == v2.fingerprint and release.champion == champion
    assert release.decision.startswith("kept champion"), release.decision
    assert release.candidates["a"]["status"] == "reused"

    # 4. a diverging candidate: recorded as diverged, never promoted, champion stays
    v3 = model_resource(small_spec(candidates={"a": [], "boom": ["optim.name=sgd", "optim.lr=1e12", "trainer.epochs=3"]}))
    plan, outcomes = plan_and_apply(adapter, [v3])
    release = registry.current_release("penguin_sex", root)
    assert release.candidates["boom"]["status"] == "diverged", release.candidates["boom"]
    assert release.champion == champion and "boom diverged" in release.decision
    assert adapter.observe([v3])["model/penguin_sex"].health == "Healthy"

    # 5. revert to v1: restore the earlier release, no training process started
    logs_before = _logs(home)
    observed = adapter.observe([v1])["model/penguin_sex"]
    assert v1.fingerprint in observed.restorable
    plan, outcomes = plan_and_apply(adapter, [v1])
    assert [a.op for a in plan.actions] == [Op.RESTORE]
    assert "no training" in outcomes[0].message
    assert logs_before and _logs(home) == logs_before
    assert registry.current_release("penguin_sex", root).fingerprint == v1.fingerprint
    assert adapter.observe([v1])["model/penguin_sex"].fingerprint == v1.fingerprint

    # 6. `specd models` lists every version with lineage, metrics and decisions; the restored one is current
    from daemon.cli import models as cli_models

    (listing,) = cli_models.collect(root, "penguin_sex")
    assert listing["current"] == v1.fingerprint and len(listing["releases"]) == 3
    current = [r for r in listing["releases"] if r["current"]]
    assert [r["fingerprint"] for r in current] == [v1.fingerprint]
    lineage = current[0]["candidates"]["a"]["lineage"]
    assert lineage["delta_version"] == "0" and lineage["table"] == GOLD and lineage["git_sha"] == "rev1"
    text = cli_models._text([listing])
    assert f"* {v1.fingerprint[:12]}" in text and "boom       diverged" in text and "kept champion" in text
