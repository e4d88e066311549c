"""Family 9: validate in one pass, with help: unknown references of a file are reported with its schema
errors, a misspelt key gets "did you mean", a wrong value is echoed, and a column an expression names
that its input does not have is a validation error."""

from __future__ import annotations

import pytest

from tests.security.helpers import RAW_TABLE, validate_errors

FEATURES = "source:\n  type: table\n  inputs: [raw]\n"

CASES = [  # (spec of specs/tables/t.yaml, expected error)
    ("sourec:\n  type: file\n  path: specs/data/raw.csv\n  format: csv\n",
     "specs/tables/t.yaml:1: sourec: Extra inputs are not permitted: did you mean 'source'?"),
    ("source:\n  type: file\n  paht: specs/data/raw.csv\n  path: specs/data/raw.csv\n  format: csv\n",
     "specs/tables/t.yaml:3: source.paht: Extra inputs are not permitted: did you mean 'path'?"),
    (FEATURES + "write:\n  mood: overwrite\n", "specs/tables/t.yaml:5: write.mood: Extra inputs are not permitted: did you mean 'mode'?"),
    (FEATURES + "write:\n  mode: sideways\n", "specs/tables/t.yaml:5: write.mode: Input should be 'overwrite', 'merge' or 'append' (got 'sideways')"),
    (FEATURES + "retention:\n  vacuum_hours: abc\n", "specs/tables/t.yaml:5: retention.vacuum_hours: Input should be a valid integer, unable to parse string as an integer (got 'abc')"),
    (FEATURES + "quality:\n  rules:\n    positive: amonut > 0\n",
     "specs/tables/t.yaml:6: quality.rules.positive: column 'amonut' is not in the input here (from table 'raw': id, amount, note); did you mean 'amount'?"),
    (FEATURES + "features:\n  columns:\n    double: amount * factor\n",
     "specs/tables/t.yaml:6: features.columns.double: column 'factor' is not in the input here (from table 'raw': id, amount, note)"),
    (FEATURES + "features:\n  columns:\n    double: amount * 2\n    quad: double * 2\n  select: [id, quad, nope]\n",
     "specs/tables/t.yaml:8: features.select: column 'nope' is not in the input here; did you mean 'note'?"),
    (FEATURES + "clean:\n  where: amout > 0\n",
     "specs/tables/t.yaml:5: clean.where: column 'amout' is not in the input here (from table 'raw': id, amount, note); did you mean 'amount'?"),
]


def _repo(spec_repo, text: str):
    spec_repo.write("specs/data/raw.csv", "id,amount,note\n1,2.5,a\n")
    spec_repo.write("specs/tables/raw.yaml", RAW_TABLE)
    spec_repo.write("specs/tables/t.yaml", text)
    return spec_repo.path


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[e.split(": ")[1] for _, e in CASES])
def test_helpful_errors(spec_repo, tmp_path, text, expected):
    errors = validate_errors(_repo(spec_repo, text), tmp_path / "home")
    assert expected in errors, errors


def test_unknown_reference_reported_with_the_schema_errors_of_the_same_file(spec_repo, tmp_path):
    text = "source:\n  type: table\n  inputs: [no_such_table]\nwrite:\n  mode: sideways\n"
    errors = validate_errors(_repo(spec_repo, text), tmp_path / "home")
    assert "specs/tables/t.yaml:3: source.inputs.0: unknown table 'no_such_table'" in errors, errors
    assert any(e.startswith("specs/tables/t.yaml:5: write.mode: Input should be") for e in errors), errors


def test_lambda_parameters_and_joined_columns_are_not_flagged(spec_repo, tmp_path):
    text = FEATURES + ("features:\n  joins:\n    - {table: raw, \"on\": [id], columns: [note], prefix: r_}\n  columns:\n"
                       "    l: \"list_transform([amount], lambda v: v + 1)\"\n    n: upper(r_note)\n")
    assert validate_errors(_repo(spec_repo, text), tmp_path / "home") == []


def test_interpolated_values_are_not_echoed(spec_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECD_TEST_LAYER", "not-a-layer-value")
    errors = validate_errors(_repo(spec_repo, FEATURES + "layer: ${oc.env:SPECD_TEST_LAYER}\n"), tmp_path / "home")
    assert any(": layer: Input should be" in e for e in errors), errors
    assert not any("not-a-layer-value" in e for e in errors), errors
