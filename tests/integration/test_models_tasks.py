"""Multiclass and regression models end to end through the adapter, with k-fold CV and a time split.

Real Delta tables, real Lightning training processes, the real BentoML store. Each task's training runs
once in a module-scoped fixture and several tests read what it left:

- multiclass (penguin species), 3-fold CV, two candidates trained concurrently (max_concurrent_candidates=2):
  accuracy/F1/log-loss/confusion matrix on the holdout; CV mean and spread per candidate in the release,
  in the stored model's metadata and in `specd models`;
- regression (body mass), split by time on `year` (the holdout year is strictly later), promoted with
  `direction: minimize` on RMSE: a weak linear champion first, then a better MLP challenger replaces it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from daemon.adapters.models import train as models_train
from daemon.adapters.models.adapter import ModelAdapter
from flows.training import registry
from tests.helpers.models import context, gold_uri, model_resource, plan_and_apply, small_spec, write_penguin_table

pytestmark = pytest.mark.integration


def _spec(**changes: Any) -> dict[str, Any]:
    data = small_spec(**changes)
    data["promotion"].pop("guardrails", None)
    return data


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("multiclass")
    write_penguin_table(gold_uri(home))
    adapter = ModelAdapter(context(home, max_concurrent_candidates=2))
    spec = _spec(data__target="species", data__exclude=["penguin_id"], task="multiclass", trainer__epochs=12,
                 split={"holdout": 0.25, "seed": 3, "folds": 3}, sensitive_attributes=["island"],
                 promotion={"metric": "f1"}, candidates={"a": [], "b": ["model.hidden=[4]", "trainer.epochs=4", "optim.lr=0.005"]})
    resource = model_resource(spec, name="penguin_species", path="specs/models/penguin_species.yaml")
    runs: list[Any] = []
    real_run_jobs = models_train.run_jobs

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = real_run_jobs(*args, **kwargs)
        runs.extend(result)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models_train, "run_jobs", spy)
        plan, outcomes = plan_and_apply(adapter, [resource])
    yield {"home": home, "root": adapter.root, "plan": plan, "outcome": outcomes[0], "runs": runs,
           "release": registry.current_release("penguin_species", adapter.root)}


def test_multiclass_metrics_on_the_holdout(multiclass: dict[str, Any]) -> None:
    release = multiclass["release"]
    assert multiclass["outcome"].details["trained"] == ["a", "b"]
    assert release.champion and release.decision.startswith("promoted")
    for name in ("a", "b"):
        metrics = release.candidates[name]["metrics"]
        assert release.candidates[name]["status"] == "trained"
        assert 0 < metrics["log_loss"] and 0 <= metrics["f1"] <= 1 and 0 <= metrics["precision"] <= 1 and 0 <= metrics["recall"] <= 1
        matrix = metrics["confusion_matrix"]
        assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
        assert sum(map(sum, matrix)) == metrics["rows"] == release.candidates[name]["metrics"]["rows"]
        assert sum(matrix[i][i] for i in range(3)) / metrics["rows"] == pytest.approx(metrics["accuracy"])
    a, b = (release.candidates[n]["metrics"] for n in ("a", "b"))
    assert a["accuracy"] > 0.9 and a["f1"] > 0.85 and a["log_loss"] < 0.5  # the base MLP learns species well
    assert b["log_loss"] > a["log_loss"]  # 4 hidden units, 4 epochs: visibly weaker
    best = max(("a", "b"), key=lambda n: release.candidates[n]["metrics"]["f1"])
    assert release.champion == release.candidates[best]["tag"]


def test_multiclass_predictor_returns_species_and_class_probabilities(multiclass: dict[str, Any]) -> None:
    from flows.training.artifact import load_predictor

    predictor = load_predictor(multiclass["release"].champion, multiclass["root"])
    out = predictor.predict({"island": ["Biscoe", "Torgersen"], "bill_length_mm": [47.5, 38.0], "bill_depth_mm": [14.5, 18.5],
                             "flipper_length_mm": [220.0, 188.0], "body_mass_g": [5300.0, 3600.0], "year": [2008, 2008],
                             "is_male": [1, 0]})
    assert predictor.config["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert out["prediction"] == ["Gentoo", "Adelie"]
    assert all(abs(sum(p) - 1.0) < 1e-5 and len(p) == 3 for p in out["probability"])


def test_cross_validation_mean_and_spread_per_candidate(multiclass: dict[str, Any]) -> None:
    from flows.training.artifact import read_model_info

    release, root = multiclass["release"], multiclass["root"]
    assert release.data["promotion"] == {"metric": "f1", "direction": "maximize", "min_improvement": 0.0}
    for name in ("a", "b"):
        cv = release.candidates[name]["metrics"]["cv"]
        assert cv["folds"] == 3
        assert 0.0 < cv["f1"]["mean"] <= 1.0 and 0.0 <= cv["f1"]["std"] < 0.3
        assert set(cv) >= {"accuracy", "log_loss", "f1"}
        stored = read_model_info(release.candidates[name]["tag"], root)["metadata"]["cv"]
        assert stored["f1"]["mean"] == pytest.approx(cv["f1"]["mean"])
    cv_a, cv_b = (release.candidates[n]["metrics"]["cv"]["f1"] for n in ("a", "b"))
    assert cv_a["mean"] > 0.9 and cv_b["mean"] < cv_a["mean"]  # each candidate's own folds, not shared numbers
    assert "3-fold CV" in multiclass["plan"].actions[0].summary


def test_specd_models_shows_cv_per_candidate(multiclass: dict[str, Any]) -> None:
    from daemon.cli import models as cli_models

    (listing,) = cli_models.collect(multiclass["root"], "penguin_species")
    (release,) = listing["releases"]
    assert release["promotion_metric"] == "f1"
    text = cli_models._text([listing])
    for name in ("a", "b"):
        cv = release["candidates"][name]["cv"]["f1"]
        assert f"cv f1 {cv['mean']:.4f} ± {cv['std']:.4f} (3 folds)" in text, text


def test_candidates_trained_concurrently_on_cpu(multiclass: dict[str, Any]) -> None:
    runs = [r for r in multiclass["runs"] if r.result and r.result.get("candidate") in ("a", "b")]
    assert len(runs) == 2 and all(r.gpus is None for r in runs)
    first, second = sorted(runs, key=lambda r: r.started_at)
    assert second.started_at < first.ended_at  # b started before a finished: both ran at once


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("regression")
    write_penguin_table(gold_uri(home))
    adapter = ModelAdapter(context(home, max_concurrent_candidates=2))
    base = {"data__target": "body_mass_g", "data__exclude": ["penguin_id"], "task": "regression",
            "split": {"by": "time", "column": "year", "holdout": 0.3, "seed": 0}, "sensitive_attributes": ["island"],
            "promotion": {"metric": "rmse", "direction": "minimize", "min_improvement": 10.0},
            "model": {"_target_": "flows.training.models.LinearBaseline"}, "trainer__epochs": 2, "optim__lr": 0.001}
    weak = model_resource(_spec(**base), name="penguin_mass", path="specs/models/penguin_mass.yaml")
    _, first = plan_and_apply(adapter, [weak])
    champion = registry.current_release("penguin_mass", adapter.root)
    mlp = ["model={_target_: flows.training.models.TabularMLP, hidden: [32, 16]}", "trainer.epochs=40", "optim.lr=0.01"]
    better = model_resource(_spec(**base, candidates={"a": [], "mlp": mlp}), name="penguin_mass", path="specs/models/penguin_mass.yaml")
    _, second = plan_and_apply(adapter, [better])
    return {"root": adapter.root, "first": first[0], "second": second[0], "champion": champion,
            "release": registry.current_release("penguin_mass", adapter.root), "home": home}


def test_regression_metrics_and_time_split(regression: dict[str, Any]) -> None:
    import polars as pl

    champion = regression["champion"]
    metrics = champion.candidates["a"]["metrics"]
    assert set(metrics) >= {"mae", "rmse", "r2", "rows"}
    assert 0 < metrics["mae"] <= metrics["rmse"]
    assert metrics["per_group"]["island"]["Biscoe"]["rmse"] > 0
    frame = pl.read_delta(gold_uri(regression["home"]))
    latest_year = frame["year"].max()
    assert metrics["rows"] == frame.filter(pl.col("year") == latest_year).height  # the holdout is the latest year only


def test_regression_promotion_minimizes_rmse(regression: dict[str, Any]) -> None:
    release, first = regression["release"], regression["champion"]
    weak, strong = release.candidates["a"]["metrics"], release.candidates["mlp"]["metrics"]
    assert regression["second"].details["trained"] == ["mlp"] and regression["second"].details["reused"] == ["a"]
    assert release.candidates["a"]["status"] == "reused"
    assert weak["rmse"] == pytest.approx(first.candidates["a"]["metrics"]["rmse"])  # re-scored on the same holdout
    assert strong["rmse"] + 10.0 <= weak["rmse"] and strong["r2"] > weak["r2"] and strong["r2"] > 0.6
    assert release.champion == release.candidates["mlp"]["tag"] and release.challengers == (first.champion,)
    assert release.decision.startswith("promoted mlp: rmse"), release.decision
    assert release.data["promotion"]["direction"] == "minimize"
