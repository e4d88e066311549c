"""Bad model specs fail with file:line errors: at compose (allowlist, overrides, metrics) and at check (columns)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon.core.compose import compose
from daemon.shared.errors import SpecErrors
from tests.helpers.models import GOLD, context, gold_uri, model_resource, small_spec, write_penguin_table

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
data:
  table: gold_penguin_features
  target: is_male
  exclude: [penguin_id]
task: binary
model:
  _target_: flows.training.models.TabularMLP
  hidden: [8]
candidates:
  a: []
  b: ["model.hidden=[16,8]", optim.lr=0.003]
promotion:
  metric: roc_auc
  guardrails:
    - {metric: demographic_parity_difference, attribute: island, max: 0.3}
sensitive_attributes: [island]
"""


def _repo(tmp_path: Path, text: str) -> Path:
    (tmp_path / "environments").mkdir(parents=True)
    (tmp_path / "environments" / "dev.yaml").write_text("prune: false\n")
    (tmp_path / "specs" / "models").mkdir(parents=True)
    (tmp_path / "specs" / "models" / "m.yaml").write_text(text)
    return tmp_path


def _errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SpecErrors) as caught:
        compose(_repo(tmp_path, text), "dev")
    return [str(i) for i in caught.value.issues]


def test_good_spec_composes(tmp_path: Path) -> None:
    composed = compose(_repo(tmp_path, GOOD), "dev")
    (doc,) = [d for d in composed.docs if d.kind == "model"]
    assert doc.spec.candidate_config("b")["model"]["hidden"] == [16, 8]
    assert doc.spec.candidate_config("b")["optim"]["lr"] == 0.003
    assert doc.spec.candidate_config("a")["model"]["hidden"] == [8]


def test_target_outside_allowlist(tmp_path: Path) -> None:
    errors = _errors(tmp_path, GOOD.replace("flows.training.models.TabularMLP", "os.system"))
    assert any(e.startswith("specs/models/m.yaml:6: model:") and "allowlist" in e for e in errors), errors


def test_candidate_switching_to_disallowed_target(tmp_path: Path) -> None:
    errors = _errors(tmp_path, GOOD.replace("optim.lr=0.003]", "model._target_=subprocess.call]"))
    assert any(e.startswith("specs/models/m.yaml:11: candidates.b:") and "allowlist" in e for e in errors), errors


def test_malformed_override(tmp_path: Path) -> None:
    errors = _errors(tmp_path, GOOD.replace('"model.hidden=[16,8]"', '"model.hidden=[16,"'))
    assert any(e.startswith("specs/models/m.yaml:11: candidates.b.0:") and "malformed override" in e for e in errors), errors


def test_override_of_unknown_section_and_field(tmp_path: Path) -> None:
    errors = _errors(tmp_path / "one", GOOD.replace("optim.lr=0.003]", "trainer.epoch=3]"))
    assert any(e.startswith("specs/models/m.yaml:11: candidates.b:") and "trainer.epoch" in e for e in errors), errors
    errors = _errors(tmp_path / "two", GOOD.replace("optim.lr=0.003]", "data.table=x]"))
    assert any(e.startswith("specs/models/m.yaml:11: candidates.b.1:") and "may override" in e for e in errors), errors


def test_metric_the_task_does_not_have(tmp_path: Path) -> None:
    errors = _errors(tmp_path, GOOD.replace("metric: roc_auc", "metric: rmse"))
    assert any(e.startswith("specs/models/m.yaml:13: promotion.metric:") and "no metric 'rmse'" in e for e in errors), errors
    errors = _errors(tmp_path / "regression", GOOD.replace("task: binary", "task: regression"))
    assert any("promotion.metric" in e and "regression" in e for e in errors), errors
    assert any("promotion.guardrails.0.metric" in e for e in errors), errors


def test_unknown_columns_are_file_line_errors(tmp_path: Path) -> None:
    from daemon.adapters.models.adapter import ModelAdapter
    from daemon.core.graph import Graph

    home = tmp_path / "home"
    write_penguin_table(gold_uri(home))
    repo = _repo(tmp_path / "repo", GOOD.replace("exclude: [penguin_id]", "features: [bill_length_mm, beak_colour]").replace("target: is_male", "target: sex"))
    data = small_spec(data={"table": GOLD, "target": "sex", "features": ["bill_length_mm", "beak_colour"]})
    resource = model_resource(data, name="m", path="specs/models/m.yaml")
    issues = [str(i) for i in ModelAdapter(context(home, repo_dir=repo)).check([resource], Graph((resource,)))]
    assert any(
        i.startswith("specs/models/m.yaml:3: data.target: unknown target column 'sex'") for i in issues), issues
    assert any(i.startswith("specs/models/m.yaml:4: data.features.1: unknown feature column 'beak_colour'") for i in issues), issues


def test_validate_and_observe_stay_light(tmp_path: Path) -> None:
    """plan/validate import the spec, the adapter and call observe + check: no torch, bentoml, prefect, lightning."""
    home = tmp_path / "home"
    write_penguin_table(gold_uri(home))
    script = textwrap.dedent(f"""
        import sys
        from tests.helpers.models import context, model_resource, small_spec
        from daemon.adapters.models.adapter import ModelAdapter
        from daemon.core.graph import Graph
        resource = model_resource(small_spec())
        adapter = ModelAdapter(context(__import__('pathlib').Path({str(home)!r})))
        observed = adapter.observe([resource])
        assert not observed['model/penguin_sex'].exists
        assert adapter.check([resource], Graph((resource,))) == []
        heavy = sorted(m for m in ('torch', 'bentoml', 'prefect', 'lightning', 'polars') if m in sys.modules)
        print('HEAVY', heavy)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout
