"""Service spec validation, default ports, plan text and the light-import rule of the services kind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from daemon.schema.service import PORT_SPAN, ServiceSpec, default_port

REPO = Path(__file__).resolve().parents[2]


def _spec(**overrides):
    data = {"model": "penguin_sex", "variants": [{"name": "champion", "role": "champion", "weight": 90},
                                                  {"name": "challenger", "role": "challenger", "weight": 10}]}
    data.update(overrides)
    return ServiceSpec.model_validate(data)


def test_references_and_normalised_weights():
    spec = _spec()
    assert [(r.kind, r.name) for r in spec.references()] == [("model", "penguin_sex")]
    assert spec.normalised_weights() == pytest.approx({"champion": 0.9, "challenger": 0.1})


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([{"name": "a", "weight": 1}], "exactly one of 'role'"),
        ([{"name": "a", "role": "champion", "version": "penguin_sex:x", "weight": 1}], "exactly one of 'role'"),
        ([{"name": "a", "role": "champion", "weight": 1}, {"name": "a", "role": "challenger", "weight": 1}], "repeated: a"),
        ([{"name": "a", "role": "champion", "weight": 0}], "more than 0"),
        ([{"name": "a", "role": "champion", "weight": 1}, {"name": "b", "role": "champion", "weight": 1}], "at most one"),
        ([{"name": "a", "version": "other_model:v1", "weight": 1}], "not a tag of model"),
        ([{"name": "a", "role": "champion", "candidate": "b", "weight": 1}], "needs role: challenger"),
        ([{"name": "a", "role": "champion", "weight": -1}], "greater than or equal to 0"),
    ],
)
def test_invalid_variants_are_rejected(variants, message):
    with pytest.raises(ValidationError, match=message):
        _spec(variants=variants)


def test_auth_needs_secret_references():
    with pytest.raises(ValidationError, match="at least one api_keys"):
        _spec(auth={"required": True})
    with pytest.raises(ValidationError, match="secret reference"):
        _spec(auth={"required": True, "api_keys": ["plain-text-key"]})
    assert _spec(auth={"required": True, "api_keys": ["secret:PENGUIN_API_KEY"]}).auth.api_keys == ["secret:PENGUIN_API_KEY"]


def test_unknown_field_is_an_error():
    with pytest.raises(ValidationError, match="Extra inputs"):
        _spec(wieghts=[1])


def test_default_port_is_stable_and_in_range():
    assert default_port("penguin_api", 3100) == default_port("penguin_api", 3100)
    ports = {default_port(f"svc{i}", 3100) for i in range(50)}
    assert all(3100 <= p < 3100 + PORT_SPAN for p in ports)
    assert len(ports) > 40  # spread out


def test_example_spec_composes_with_a_90_10_split():
    from daemon.core.compose import compose

    composed = compose(REPO, "dev")
    doc = composed.by_key()["service/penguin_api"]
    assert doc.spec.model == "penguin_sex"
    assert doc.spec.normalised_weights() == pytest.approx({"champion": 0.9, "challenger": 0.1})
    assert doc.spec.routing.sticky_field == "user_id"


def test_describe_and_port_collisions(tmp_path):
    from daemon.adapters.base import AdapterContext
    from daemon.adapters.services.adapter import ServiceAdapter
    from daemon.core.graph import Resource
    from daemon.core.plan import Action, Op
    from daemon.schema.environment import EnvironmentSpec

    adapter = ServiceAdapter(AdapterContext(EnvironmentSpec(name="dev"), tmp_path, tmp_path, "abc"))
    spec = _spec(port=3999)
    a = Resource("service/a", "service", "a", "specs/services/a.yaml", spec, {}, (), "fp", 1)
    b = Resource("service/b", "service", "b", "specs/services/b.yaml", spec, {}, (), "fp", 1)
    text = adapter.describe(Action("service", "a", Op.CREATE, "new"), a)
    assert text == "traffic champion 90 / challenger 10 on 127.0.0.1:3999"
    issues = adapter.check([a, b], None)
    assert len(issues) == 1 and issues[0].field == "port" and "'a'" in issues[0].message


def test_adapter_and_observe_stay_light(tmp_path):
    """`specd plan` imports the adapter and calls observe: no torch, bentoml or prefect may load."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from daemon.adapters.base import AdapterContext
        from daemon.adapters.services.adapter import ServiceAdapter
        from daemon.schema.environment import EnvironmentSpec
        from daemon.core.compose import compose
        from daemon.core.graph import Resource
        from bentos.routing import Routing, Variant, write_routing
        home = Path({str(tmp_path)!r})
        doc = compose(Path({str(REPO)!r}), "dev").by_key()["service/penguin_api"]
        resource = Resource("service/penguin_api", "service", doc.name, doc.path, doc.spec, doc.data, ("model/penguin_sex",), "fp", 1)
        adapter = ServiceAdapter(AdapterContext(EnvironmentSpec(name="dev"), home, home, "abc"))
        write_routing(adapter.supervisor.routing_file("old_api"), Routing("old_api", "f", "r", "m", (Variant("a", "m:a", 1.0),), None, None, {{}}))
        observed = adapter.observe([resource])
        assert observed["service/penguin_api"].exists is False, observed
        assert observed["service/old_api"].exists is True, observed
        heavy = sorted(m for m in ("torch", "bentoml", "prefect", "lightning") if m in sys.modules)
        print("HEAVY", heavy)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
