"""Feature and quality SQL on small data; expression checks (spec lexer and DuckDB parser)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest
from pydantic import ValidationError

from daemon.schema.table import TableSpec
from daemon.schema.table_transforms import FeaturesSpec, QualitySpec
from flows.tables.expressions import REASON_COLUMN, check_expression, check_table_expressions
from flows.tables.features import FeaturesError, features_sql
from flows.tables.quality import (
    TableStats,
    evaluate_table_checks,
    failure_counts,
    quality_sql,
    table_checks,
)

ORDERS = pa.table(
    {
        "order_id": [1, 2, 3, 4, 5],
        "customer_id": [10, 10, 20, 30, 10],
        "amount": [5.0, 15.0, 1.0, 7.0, 0.0],
        "quantity": [1, 3, 0, 7, 2],
        "ordered_at": pa.array([datetime(2024, 1, d) for d in (1, 2, 3, 9, 5)], pa.timestamp("us")),
    }
)
CUSTOMERS = pa.table({"customer_id": [10, 20], "segment": ["gold", "silver"], "country": ["DE", "FR"]})


@pytest.fixture
def connection() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.register("orders", ORDERS)
    connection.register("customers_view", CUSTOMERS)
    return connection


def features(connection, spec: dict, **kwargs) -> pa.Table:
    sql = features_sql("orders", FeaturesSpec.model_validate(spec), {"customers": "customers_view"}, **kwargs)
    return (
        connection.sql(sql)
        .to_arrow_table()
        .sort_by("order_id" if "aggregate" not in spec else spec["aggregate"]["by"][0])
    )


def test_derived_columns_chain_and_replace(connection) -> None:
    out = features(
        connection,
        {
            "columns": {
                "log_amount": "ln(1 + amount)",
                "unit_price": "amount / nullif(quantity, 0)",
                "month": "month(ordered_at)",
                "weekday": "dayofweek(ordered_at)",
                "log_twice": "log_amount * 2",  # uses the column derived above
                "amount": "amount * 100",  # replaces an input column
            }
        },
    )
    rows = out.to_pylist()
    assert rows[0]["log_amount"] == pytest.approx(1.791759, rel=1e-5)
    assert rows[0]["log_twice"] == pytest.approx(2 * rows[0]["log_amount"])
    assert rows[2]["unit_price"] is None  # division by zero guarded
    assert rows[0]["month"] == 1 and rows[0]["amount"] == 500.0
    assert out.column_names.count("amount") == 1


def test_windows_partition_order_and_frame(connection) -> None:
    out = features(
        connection,
        {
            "windows": {
                "running_total": {
                    "expr": "sum(amount)",
                    "partition_by": ["customer_id"],
                    "order_by": ["ordered_at"],
                    "frame": "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
                },
                "previous_amount": {"expr": "lag(amount)", "partition_by": ["customer_id"], "order_by": ["ordered_at"]},
                "last_7_days": {
                    "expr": "count(*)",
                    "partition_by": ["customer_id"],
                    "order_by": ["ordered_at"],
                    "frame": "RANGE BETWEEN INTERVAL '2 days' PRECEDING AND CURRENT ROW",
                },
            }
        },
    )
    by_id = {r["order_id"]: r for r in out.to_pylist()}
    assert [by_id[i]["running_total"] for i in (1, 2, 5)] == [5.0, 20.0, 20.0]
    assert by_id[2]["previous_amount"] == 5.0 and by_id[1]["previous_amount"] is None
    assert by_id[5]["last_7_days"] == 1 and by_id[2]["last_7_days"] == 2


@pytest.mark.parametrize(
    ("join", "columns", "segment_column"),
    [
        ({"table": "customers", "on": ["customer_id"]}, ["segment", "country"], "segment"),
        ({"table": "customers", "on": ["customer_id"], "prefix": "c_"}, ["c_segment", "c_country"], "c_segment"),
        ({"table": "customers", "on": ["customer_id"], "columns": ["segment"]}, ["segment"], "segment"),
    ],
)
def test_left_join_brings_columns_once(connection, join: dict, columns: list[str], segment_column: str) -> None:
    out = features(connection, {"joins": [join]})
    assert out.column_names == [*ORDERS.column_names, *columns]
    assert out.column(segment_column).to_pylist() == ["gold", "gold", "silver", None, "gold"]


def test_inner_join_aggregate_having_select(connection) -> None:
    spec = {
        "joins": [{"table": "customers", "on": ["customer_id"], "how": "inner"}],
        "aggregate": {
            "by": ["segment"],
            "aggregates": {"orders": "count(*)", "revenue": "sum(amount)"},
            "having": "count(*) >= 1",
        },
        "select": ["segment", "revenue"],
    }
    out = features(connection, spec)
    assert out.to_pylist() == [{"segment": "gold", "revenue": 20.0}, {"segment": "silver", "revenue": 1.0}]


def test_join_without_input_view_and_aggregate_of_quarantine_are_refused() -> None:
    spec = FeaturesSpec.model_validate({"joins": [{"table": "other", "on": ["k"]}]})
    with pytest.raises(FeaturesError, match=r"features\.joins\[0\]\.table"):
        features_sql("v", spec, {})
    spec = FeaturesSpec.model_validate({"aggregate": {"aggregates": {"n": "count(*)"}}})
    with pytest.raises(FeaturesError, match="features.aggregate"):
        features_sql("v", spec, {}, carries_reason=True)


def test_reason_column_survives_select(connection) -> None:
    connection.execute(f"CREATE VIEW with_reason AS SELECT *, NULL::VARCHAR AS {REASON_COLUMN} FROM orders")
    sql = features_sql(
        "with_reason",
        FeaturesSpec.model_validate({"select": ["order_id"], "columns": {"x": "1"}}),
        {},
        carries_reason=True,
    )
    assert connection.sql(sql).columns == ["order_id", REASON_COLUMN]


def test_join_is_a_graph_reference() -> None:
    spec = TableSpec.model_validate(
        {
            "source": {"type": "table", "inputs": ["orders"]},
            "features": {"joins": [{"table": "customers", "on": ["customer_id"]}]},
        }
    )
    assert {ref.name for ref in spec.references()} == {"orders", "customers"}
    assert ("features", "joins", 0, "table") in {ref.field for ref in spec.references()}


# ---------------------------------------------------------------- expressions
@pytest.mark.parametrize(
    "bad",
    [
        "1); DROP TABLE t; --",
        "amount) AS a, secret FROM other --",
        "1), (2",
        "E'\\'' ; select 1",
        "$$ x $$",
        "amount /* hidden */",
        "'unterminated",
        "1; 2",
    ],
)
def test_spec_lexer_refuses_injection(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        FeaturesSpec.model_validate({"columns": {"x": bad}})
    (error,) = info.value.errors()  # one error, at the column (plus the union tag of the short form)
    assert error["loc"] == ("columns", "x", "str[expr]")


@pytest.mark.parametrize(
    ("expr", "role", "problem"),
    [
        ("ln(1 + amount)", "scalar", None),
        ("amount * ';' || '--'", "scalar", None),  # quotes protect ; and --
        ("amount +", "scalar", "cannot parse"),
        ("(SELECT max(x) FROM other)", "scalar", "subqueries are not allowed"),
        ("amount IN (SELECT 1)", "predicate", "subqueries are not allowed"),
        ("sum(amount)", "window", None),
        ("sum(amount) / 2", "window", "one function call"),
        ("amount", "window", "one function call"),
        ("count(*) > 2", "predicate", None),
    ],
)
def test_duckdb_parser_check(expr: str, role: str, problem: str | None) -> None:
    result = check_expression(expr, role)
    assert (result is None) if problem is None else (problem in (result or "")), result


def test_check_table_expressions_names_fields() -> None:
    spec = TableSpec.model_validate(
        {
            "source": {"type": "table", "inputs": ["orders"]},
            "clean": {"where": "amount >"},
            "features": {
                "columns": {"ok": "amount + 1", "bad": "(SELECT 1)"},
                "windows": {"w": {"expr": "sum(a) + 1"}},
            },
            "quality": {"rules": {"positive": "amount >= 0 AND"}, "columns": {"email": {"regex": "^(?=a)"}}},
        }
    )
    fields = {path for path, _ in check_table_expressions(spec)}
    assert fields == {
        ("clean", "where"),
        ("features", "columns", "bad"),
        ("features", "windows", "w", "expr"),
        ("quality", "rules", "positive"),
        ("quality", "columns", "email", "regex"),
    }


# ---------------------------------------------------------------- quality
def test_row_checks_name_every_failure() -> None:
    table = pa.table(
        {
            "id": [1, 2, 2, None, 5],
            "email": ["a@x.org", "bad", "c@x.org", "d@x.org", None],
            "amount": [10.0, -1.0, 50.0, 999.0, None],
            "country": ["DE", "FR", "XX", "DE", None],
        }
    )
    spec = QualitySpec.model_validate(
        {
            "action": "quarantine",
            "columns": {
                "id": {"not_null": True, "unique": True},
                "email": {"regex": "^[^@]+@[^@]+$"},
                "amount": {"min": 0, "max": 100},
                "country": {"allowed": ["DE", "FR"]},
            },
            "rules": {"big_orders_from_de": "amount < 500 OR country = 'DE'", "never_null": "email IS NOT NULL"},
        }
    )
    connection = duckdb.connect()
    connection.register("t", table)
    out = connection.sql(quality_sql("t", spec)).to_arrow_table().sort_by([("id", "ascending")])
    found = sorted(
        (str(i), r) for i, r in zip(out.column("id").to_pylist(), out.column(REASON_COLUMN).to_pylist(), strict=True)
    )
    assert found == [
        ("1", None),
        ("2", "id.unique; country.allowed"),
        ("2", "id.unique; email.regex; amount.range"),
        ("5", "rule.never_null"),
        ("None", "id.not_null; amount.range"),
    ]
    assert failure_counts(out.column(REASON_COLUMN)) == {
        "id.unique": 2,
        "country.allowed": 1,
        "email.regex": 1,
        "amount.range": 2,
        "id.not_null": 1,
        "rule.never_null": 1,
    }


def test_existing_reasons_are_combined() -> None:
    connection = duckdb.connect()
    connection.execute(
        f"CREATE VIEW t AS SELECT * FROM (VALUES (1, 'amount.cast'), (NULL, NULL), (3, NULL)) v(id, {REASON_COLUMN})"
    )
    spec = QualitySpec.model_validate({"columns": {"id": {"not_null": True}}})
    rows = connection.execute(
        f"SELECT * FROM ({quality_sql('t', spec, carries_reason=True)}) ORDER BY id NULLS LAST"
    ).fetchall()
    assert rows == [(1, "amount.cast"), (3, None), (None, "id.not_null")]


def test_table_checks_row_count_and_freshness() -> None:
    spec = QualitySpec.model_validate(
        {"row_count": {"min": 3, "max": 10}, "freshness": {"column": "ts", "max_age": "24h"}}
    )
    now = datetime(2024, 6, 2, 12, tzinfo=UTC)
    fresh = evaluate_table_checks(spec, row_count=5, newest=datetime(2024, 6, 2, 0), now=now)
    assert all(r.passed for r in fresh) and [r.check for r in fresh] == ["table.row_count", "table.freshness"]
    stale = evaluate_table_checks(spec, row_count=2, newest=now - timedelta(hours=30), now=now)
    assert [r.passed for r in stale] == [False, False]
    assert "30.0 h old" in stale[1].message
    assert evaluate_table_checks(spec, row_count=5, newest=date(2024, 6, 1), now=now)[1].passed
    assert not evaluate_table_checks(spec, row_count=5, newest=None, now=now)[1].passed

    connection = duckdb.connect()
    connection.register(
        "t", pa.table({"ts": pa.array([datetime(2024, 6, 1), datetime(2024, 5, 1)], pa.timestamp("us"))})
    )
    failures = table_checks(connection, "t", spec, now=now)
    assert [name for name, _ in failures] == ["table.row_count", "table.freshness"]

    stats = TableStats(spec)
    stats.add(pa.record_batch({"ts": pa.array([datetime(2024, 6, 2, 1)], pa.timestamp("us"))}))
    stats.add(pa.record_batch({"ts": pa.array([datetime(2024, 6, 1)], pa.timestamp("us"))}))
    assert (stats.row_count, stats.newest) == (2, datetime(2024, 6, 2, 1))


def test_check_names_match_reasons() -> None:
    spec = QualitySpec.model_validate(
        {"columns": {"a": {"not_null": True, "min": 1, "regex": "x"}}, "rules": {"r": "a > 0"}, "row_count": {"min": 1}}
    )
    assert spec.check_names() == ["a.not_null", "a.range", "a.regex", "rule.r", "table.row_count"]
