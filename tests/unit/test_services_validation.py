"""Request validation: every 4xx names the field that is wrong."""

from __future__ import annotations

import pytest

from bentos.validation import RequestError, parse_body, validate_request

SCHEMA = {"bill_length_mm": "float64", "year": "int64", "island": "string"}
ROW = {"bill_length_mm": 39.1, "year": 2008, "island": "Biscoe"}


def test_single_row_and_batch_become_columns():
    single = validate_request({"features": ROW, "user_id": "u1"}, SCHEMA, max_rows=4, sticky_field="user_id")
    assert single.single and single.rows == 1 and single.sticky_key == "u1"
    assert single.columns == {"bill_length_mm": [39.1], "year": [2008], "island": ["Biscoe"]}
    batch = validate_request({"instances": [ROW, {**ROW, "bill_length_mm": None, "year": 2009.0}]}, SCHEMA, max_rows=4)
    assert not batch.single and batch.rows == 2
    assert batch.columns["bill_length_mm"] == [39.1, None] and batch.columns["year"] == [2008, 2009]


@pytest.mark.parametrize(
    ("raw", "status", "field", "fragment"),
    [
        (b"", 400, "body", "empty"),
        (b'{"features": {', 400, "body", "malformed JSON"),
        (b"[1, 2]", 400, "body", "JSON object"),
    ],
)
def test_body_errors(raw, status, field, fragment):
    with pytest.raises(RequestError) as info:
        parse_body(raw)
    assert (info.value.status, info.value.field) == (status, field) and fragment in info.value.message


@pytest.mark.parametrize(
    ("body", "status", "field", "fragment"),
    [
        ({"features": {**ROW, "bill_length_mm": "long"}}, 400, "features.bill_length_mm", "expected a number"),
        ({"features": {**ROW, "year": 2008.5}}, 400, "features.year", "expected an integer"),
        ({"features": {**ROW, "year": True}}, 400, "features.year", "boolean"),
        ({"features": {**ROW, "island": 3}}, 400, "features.island", "expected a string"),
        ({"features": {"bill_length_mm": 1.0, "island": "x"}}, 400, "features.year", "missing feature"),
        ({"features": {**ROW, "colour": "x"}}, 400, "features.colour", "unknown feature"),
        ({"instances": [ROW, {**ROW, "year": "x"}]}, 400, "instances[1].year", "expected a number"),
        ({"instances": [ROW] * 5}, 413, "instances", "exceed the limit of 4"),
        ({"instances": []}, 400, "instances", "at least one"),
        ({"instances": {"a": 1}}, 400, "instances", "list"),
        ({"instances": [1]}, 400, "instances[0]", "object"),
        ({"features": ROW, "instances": [ROW]}, 400, "features", "exactly one"),
        ({"feature": ROW}, 400, "feature", "unknown field"),
        ({"features": {**ROW, "bill_length_mm": float("nan")}}, 400, "features.bill_length_mm", "finite"),
    ],
)
def test_request_errors_name_the_field(body, status, field, fragment):
    with pytest.raises(RequestError) as info:
        validate_request(body, SCHEMA, max_rows=4)
    error = info.value
    assert (error.status, error.field) == (status, field)
    assert fragment in error.message
    assert error.to_json()["field"] == field and field in error.to_json()["error"]


def test_union_of_variant_features_is_accepted():
    body = {"features": {**ROW, "body_mass_g": 4000.0}}  # the challenger needs one more feature
    parsed = validate_request(body, SCHEMA, max_rows=1, known=frozenset(SCHEMA) | {"body_mass_g"})
    assert set(parsed.columns) == set(SCHEMA)


def test_every_bad_field_of_a_request_is_listed_once():
    schema = {"bill_length_mm": "float64", "year": "int64", "island": "string"}
    body = {"instances": [{"bill_length_mm": "long", "year": 2007.5, "island": "Dream"}, {"year": 2008, "island": 3, "beak": 1}]}
    with pytest.raises(RequestError) as info:
        validate_request(body, schema, max_rows=10)
    answer = info.value.to_json()
    assert answer["status"] == 400 and answer["field"] == "instances[0].bill_length_mm"
    assert [e["field"] for e in answer["errors"]] == [
        "instances[0].bill_length_mm",
        "instances[0].year",
        "instances[1].beak",
        "instances[1].bill_length_mm",
        "instances[1].island",
    ]
    assert "missing feature" in answer["errors"][3]["error"]
