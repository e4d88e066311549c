"""PII lineage at validation time (flows/tables/pii.py): a column derived from a protected column must
be protected itself or explicitly allowed; table-driven over features and `table` source queries."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.schema.table import TableSpec
from flows.tables.pii import pii_derivations

FILE = {"type": "file", "path": "data/users.csv", "format": "csv"}
PRIVACY = {"columns": {"email": {"mode": "hash", "key": "secret:K"}, "phone": "drop"}}


def problems(features: dict | None = None, source: dict | None = None, privacy: dict | None = PRIVACY) -> dict[tuple, str]:
    data: dict[str, Any] = {"source": source or FILE}
    if features is not None:
        data["features"] = features
    if privacy is not None:
        data["privacy"] = privacy
    return dict(pii_derivations(TableSpec.model_validate(data)))


@pytest.mark.parametrize(
    ("features", "flagged"),
    [
        ({"columns": {"domain": "split_part(email, '@', 2)"}}, {("features", "columns", "domain")}),
        ({"columns": {"d": "lower(U.EMAIL)"}}, {("features", "columns", "d")}),  # qualified, any case
        ({"columns": {"email": "lower(email)"}}, set()),  # replaces the protected column: still protected
        ({"columns": {"phone": "regexp_replace(phone, ' ', '')", "email": "lower(email)"}}, set()),
        ({"columns": {"n": "length(name)", "x": "amount * 2"}}, set()),
        ({"columns": {"domain": {"expr": "split_part(email, '@', 2)", "allow_pii_derivation": True}}}, set()),
        ({"columns": {"a": "lower(email)", "b": "a || '!'"}, "drop": ["a"]}, {("features", "columns", "b")}),  # taint flows
        ({"columns": {"a": {"expr": "length(email)", "allow_pii_derivation": True}, "b": "a + 1"}}, set()),
        ({"columns": {"a": "lower(email)"}, "select": ["id"]}, set()),  # never written
        ({"columns": {"a": "lower(email)"}, "drop": ["a"]}, set()),
        ({"windows": {"first_mail": {"expr": "first_value(email)", "order_by": ["id"]}}}, {("features", "windows", "first_mail", "expr")}),
        ({"windows": {"n": {"expr": "count(*)", "partition_by": ["email"]}}}, set()),  # partitioning shows no value
        ({"windows": {"m": {"expr": "max(phone)", "allow_pii_derivation": True}}}, set()),
        ({"aggregate": {"by": ["country"], "aggregates": {"users": "count(DISTINCT email)"}}}, {("features", "aggregate", "aggregates", "users")}),
        ({"aggregate": {"by": ["country"], "aggregates": {"users": {"expr": "count(DISTINCT email)", "allow_pii_derivation": True}}}}, set()),
        ({"columns": {"dom": "split_part(email, '@', 2)"}, "aggregate": {"by": ["dom"], "aggregates": {"n": "count(*)"}}}, {("features", "columns", "dom")}),
        ({"columns": {"dom": "split_part(email, '@', 2)"}, "aggregate": {"by": ["country"], "aggregates": {"n": "count(*)"}}}, set()),
    ],
)
def test_feature_derivations(features: dict, flagged: set) -> None:
    found = problems(features)
    assert set(found) == flagged, found
    for message in found.values():
        assert "would be written in plaintext" in message and "allow_pii_derivation: true" in message


def test_the_message_names_the_origin_and_the_path() -> None:
    found = problems({"columns": {"a": "lower(email)", "b": "a || phone"}, "drop": ["a"]})
    assert found[("features", "columns", "b")].startswith("column 'b' is derived from the protected column(s) email, phone (through a)")


@pytest.mark.parametrize(
    ("sql", "flagged"),
    [
        ("SELECT id, email, phone FROM users", False),
        ("SELECT * FROM users WHERE email LIKE '%@example.org'", False),  # filtering shows no value
        ("SELECT u.email, o.total FROM users u JOIN orders o ON o.email = u.email", False),
        ("SELECT mail AS email FROM users", False),  # an unprotected upstream column lands in a protected one
        ("SELECT email AS contact FROM users", True),
        ("SELECT lower(email) AS email_lc FROM users", True),
        ("SELECT lower(email) FROM users", True),
        ("SELECT * REPLACE (lower(email) AS email) FROM users", False),
        ("SELECT * REPLACE (lower(email) AS name) FROM users", True),
        ("WITH x AS (SELECT id, email AS e FROM users) SELECT id FROM x", True),  # conservative: any SELECT
        ("SELECT id FROM (SELECT id, md5(phone) AS p FROM users)", True),
    ],
)
def test_table_source_queries(sql: str, flagged: bool) -> None:
    source = {"type": "table", "inputs": ["users", "orders"], "sql": sql}
    found = problems(source=source)
    assert bool(found) is flagged, found
    assert set(found) <= {("source", "sql")}
    assert not problems(source={**source, "allow_pii_derivation": True})


def test_no_privacy_no_lineage_check() -> None:
    assert problems({"columns": {"domain": "split_part(email, '@', 2)"}}, privacy=None) == {}
