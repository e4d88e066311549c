"""Family 3: `_target_` is checked at validate time: only a public function or class *defined* in an
allowlisted module (and, for specd's own reader modules, listed in their CALLABLE_SOURCES) may be a
callable source; models only name the allowlisted LightningModules. Refused again at apply."""

from __future__ import annotations

import pytest

from flows.tables.sources import SourceContext, SourceError
from tests.security.helpers import validate_errors

TARGETS = [  # (_target_, expected)
    ("os.system", "'os.system' is not on the allowlist"),
    ("builtins.eval", "'builtins.eval' is not on the allowlist"),
    ("subprocess:Popen", "'subprocess:Popen' is not on the allowlist"),
    ("flows.tables.sources.files:Path", "'Path' is not a function or class defined in flows.tables.sources.files (re-exported or missing)"),
    ("flows.tables.sources.files:globlib", "'globlib' is not a function or class defined in flows.tables.sources.files"),
    ("flows.tables.sources.callable:importlib", "'importlib' is not a function or class defined in flows.tables.sources.callable"),
    ("flows.tables.sources.files:read_uri", "'read_uri' is not one of the callable sources flows.tables.sources.files offers (CALLABLE_SOURCES: none)"),
    ("flows.tables.sources.synthetic:_column", "'_column' is private to flows.tables.sources.synthetic"),
    ("flows.tables.sources.synthetic:read", "'read' is not one of the callable sources flows.tables.sources.synthetic offers (CALLABLE_SOURCES: generate)"),
    ("flows.tables.sources.nope:thing", "module 'flows.tables.sources.nope' is not a Python source module on the path"),
    ("flows.tables.sourcesx.evil:f", "is not on the allowlist"),
]


def _spec(target: str) -> str:
    return f"source:\n  type: callable\n  _target_: {target}\n  args: {{}}\n"


@pytest.mark.parametrize(("target", "expected"), TARGETS, ids=[t for t, _ in TARGETS])
def test_callable_targets_refused_at_validate(spec_repo, tmp_path, target, expected):
    spec_repo.write("specs/tables/t.yaml", _spec(target))
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert len(errors) == 1 and errors[0].startswith("specs/tables/t.yaml:3: source._target_: ") and expected in errors[0], errors


def test_an_offered_callable_source_validates(spec_repo, tmp_path):
    spec_repo.write("specs/tables/t.yaml", "source:\n  type: callable\n  _target_: flows.tables.sources.synthetic.generate\n"
                    "  args: {rows: 3, columns: [{name: id, kind: sequence}]}\n")
    assert validate_errors(spec_repo.path, tmp_path / "home") == []


@pytest.mark.parametrize(("target", "expected"), TARGETS[3:9], ids=[t for t, _ in TARGETS[3:9]])
def test_callable_targets_refused_at_apply(tmp_path, target, expected):
    from flows.tables.sources.callable import resolve

    ctx = SourceContext("t", tmp_path, tmp_path)
    with pytest.raises(SourceError, match="not a callable source defined in|not on the allowlist"):
        resolve(target, ctx)


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "subprocess:Popen", "flows.training.models.torch", "flows.training.models:nn"])
def test_model_targets_refused_at_validate(spec_repo, tmp_path, target):
    from pydantic import ValidationError

    from daemon.schema.model import ModelSpec

    with pytest.raises(ValidationError, match="is not in the allowlist"):
        ModelSpec.model_validate({"data": {"table": "x", "target": "y"}, "model": {"_target_": target}})


def test_model_allowlist_names_lightning_modules_defined_in_their_module():
    """Static (no torch): every allowlisted model is a class defined in its module's source."""
    import ast
    import importlib.util

    from daemon.schema.model import ALLOWED_MODELS

    for target in ALLOWED_MODELS:
        module, _, name = target.rpartition(".")
        tree = ast.parse(open(importlib.util.find_spec(module).origin).read())
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        assert name in classes, target
