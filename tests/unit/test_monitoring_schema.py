"""The model spec's `monitoring:` block: defaults, thresholds by method, and clear errors for bad values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from daemon.adapters.models.drift import settings_for
from daemon.schema.model import ModelSpec
from tests.helpers.models import small_spec


def test_defaults_and_method_thresholds():
    spec = ModelSpec.model_validate(small_spec(monitoring={}))
    assert spec.monitoring is not None and not spec.monitoring.retrain_on_drift
    settings = settings_for(spec)
    assert (settings.numeric, settings.numeric_threshold) == ("wasserstein", 0.1)
    assert (settings.categorical, settings.categorical_threshold) == ("jensenshannon", 0.1)
    assert settings.target == "is_male" and settings.features == ()  # empty: the model's features
    ks = settings_for(ModelSpec.model_validate(small_spec(monitoring={"numeric": "ks", "categorical": "chisquare"})))
    assert ks.numeric_threshold == ks.categorical_threshold == 0.05
    assert ModelSpec.model_validate(small_spec()).monitoring is None


@pytest.mark.parametrize(("block", "where"), [
    ({"numeric": "euclid"}, ("monitoring", "numeric")),
    ({"drift_share": 1.5}, ("monitoring", "drift_share")),
    ({"window": {"last": 5}}, ("monitoring", "window", "last")),
    ({"retrain": True}, ("monitoring", "retrain")),
    ({"numeric": "ks", "threshold": 2.0}, ("monitoring",)),
])
def test_bad_monitoring_values_name_the_field(block, where):
    with pytest.raises(ValidationError) as info:
        ModelSpec.model_validate(small_spec(monitoring=block))
    assert tuple(info.value.errors()[0]["loc"]) == where


def test_retrain_on_drift_policy_needs_monitoring_and_never_fires_on_rows_alone():
    from daemon.adapters.models.retrain import DataState, decide

    with pytest.raises(ValidationError) as info:
        ModelSpec.model_validate(small_spec(retrain={"on": "drift"}))
    assert tuple(info.value.errors()[0]["loc"]) == ("retrain", "on")
    spec = ModelSpec.model_validate(small_spec(retrain={"on": "drift"}, monitoring={}))
    assert spec.retrain.describe() == "policy drift"
    trained, live = DataState(1, "digest-a", 400), DataState(2, "digest-b", 500)
    decision = decide(spec.retrain, "gold", trained, live, 0.0, None)
    assert not decision.fire and decision.lagging and "data ahead by 100 rows" in decision.reason
