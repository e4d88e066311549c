"""Where a service worker loads its models: from the bento itself in a containerized bento
($BENTO_PATH/models), from the $BENTOML_HOME store everywhere else — for the A/B service and the
single-model service alike (one helper, `bentos.worker.model_loader`)."""

from __future__ import annotations

import gc

import pytest

from bentos.worker import bento_model_root, model_loader
from flows.training.artifact import make_test_model


@pytest.fixture
def bento_and_home(tmp_path, monkeypatch):
    """A bento directory holding one model, and an empty $BENTOML_HOME store."""
    bento, home = tmp_path / "bento", tmp_path / "home"
    (home / "models").mkdir(parents=True)
    tag = make_test_model("penguin_sex", "base", root=bento)
    monkeypatch.setenv("BENTOML_HOME", str(home))
    monkeypatch.setenv("BENTO_PATH", str(bento))
    return bento, tag


def test_a_containerized_bento_loads_its_own_models(bento_and_home, monkeypatch):
    bento, tag = bento_and_home
    monkeypatch.setenv("BENTOML_CONTAINERIZED", "true")
    assert bento_model_root() == str(bento)
    predictor = model_loader()(tag)
    assert predictor.tag == tag


def test_outside_a_container_the_store_is_bentoml_home(bento_and_home, monkeypatch):
    bento, tag = bento_and_home
    monkeypatch.delenv("BENTOML_CONTAINERIZED", raising=False)
    assert bento_model_root() is None
    with pytest.raises(FileNotFoundError, match="missing or incomplete"):
        model_loader()(tag)  # not in $BENTOML_HOME: the bento's copy is not used
    # a bento path without models (a bento built without them) also means the store
    assert bento_model_root({"BENTOML_CONTAINERIZED": "true", "BENTO_PATH": str(bento / "nowhere")}) is None


def test_the_single_model_service_loads_from_the_bento(bento_and_home, monkeypatch):
    from bentos.single_model import SingleModel

    _, tag = bento_and_home
    thresholds = gc.get_threshold()
    monkeypatch.setattr(gc, "freeze", lambda: None)  # the service tunes its worker's collector, not pytest's
    monkeypatch.setattr(gc, "set_threshold", lambda *args: None)
    monkeypatch.setenv("BENTOML_CONTAINERIZED", "true")
    monkeypatch.setenv("SPECD_MODEL_TAG", tag)
    service = SingleModel.inner()
    assert service.predictor.tag == tag
    answer = service.predict({"bill_length_mm": 39.1, "flipper_length_mm": 181.0, "year": 2008, "island": "v1"})
    assert 0.0 <= answer["probability"] <= 1.0
    assert gc.get_threshold() == thresholds
