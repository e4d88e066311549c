"""Cleaning SQL on small in-memory data: each rule, the order of the steps, and the row counters."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from daemon.schema.table_transforms import CleanSpec
from flows.tables.clean import CleanError, clean_sql
from flows.tables.expressions import REASON_COLUMN


def run(table: pa.Table, spec: dict) -> tuple[list[dict], tuple, bool]:
    connection = duckdb.connect()
    connection.register("src", table)
    columns = {f.name: str(f.type) for f in table.schema}
    cleaned = clean_sql("src", CleanSpec.model_validate(spec), columns)
    rows = connection.sql(cleaned.sql).to_arrow_table().to_pylist()
    counts = connection.execute(cleaned.counts_sql).fetchone()
    return rows, counts, cleaned.adds_reason


def by(rows: list[dict], key: str) -> dict:
    return {row[key]: row for row in rows}


MESSY = pa.table(
    {
        "id": [1, 1, 2, 3, 4, 5, 6],
        "updated": [1, 2, 1, 1, 1, 1, 1],
        "email": ["  Ann@X.com ", "ann@x.com", None, "c@x", "D@X", "e@x", "f@x"],
        "amount": ["1.5", " 2 ", "oops", "4", None, "1000", "3"],
        "group": ["a", "a", "b", "b", "b", "c", "c"],
        "level": [1, None, 3, None, 5, None, None],
    }
)


@pytest.mark.parametrize(
    ("spec", "check"),
    [
        # dedupe keeps the latest row by the order column
        (
            {"dedupe": {"keys": ["id"], "keep_latest_by": "updated"}},
            lambda r: by(r, "id")[1]["updated"] == 2 and len(r) == 6,
        ),
        # normalisation: trim + lower
        ({"columns": {"email": {"normalize": {"case": "lower"}}}}, lambda r: by(r, "id")[4]["email"] == "d@x"),
        # cast with bad values → NULL; ' 2 ' is trimmed by the cast
        (
            {"columns": {"amount": {"cast": "float64"}}},
            lambda r: {x["amount"] for x in r} == {1.5, 2.0, None, 4.0, 1000.0, 3.0},
        ),
        # constant fill
        (
            {"columns": {"email": {"nulls": {"strategy": "constant", "value": "unknown"}}}},
            lambda r: by(r, "id")[2]["email"] == "unknown",
        ),
        # mean of an integer column stays an integer: mean(1,3,5) = 3
        ({"columns": {"level": {"nulls": "mean"}}}, lambda r: by(r, "id")[5]["level"] == 3),
        # median of a cast column: median(1.5, 2, 4, 1000, 3) = 3
        ({"columns": {"amount": {"cast": "float64", "nulls": "median"}}}, lambda r: by(r, "id")[2]["amount"] == 3.0),
        # mode
        (
            {"columns": {"group": {"nulls": "mode"}}},
            lambda r: sorted(x["group"] for x in r) == ["a", "a", "b", "b", "b", "c", "c"],
        ),
        # forward fill within a group, in order
        (
            {
                "columns": {
                    "level": {"nulls": {"strategy": "forward_fill", "order_by": "id", "partition_by": ["group"]}}
                }
            },
            # group b: 3, NULL, 5 → the NULL takes 3; group c starts with NULLs, which stay NULL
            lambda r: (
                by(r, "id")[3]["level"] == 3 and by(r, "id")[5]["level"] is None and by(r, "id")[6]["level"] is None
            ),
        ),
        # clipping to fixed bounds
        (
            {"columns": {"amount": {"cast": "float64", "clip": {"lower": 2, "upper": 100}}}},
            lambda r: max(x["amount"] or 0 for x in r) == 100 and min(x["amount"] or 9 for x in r) == 2,
        ),
        # clipping to quantiles: the 1000 outlier comes down to the 80% quantile
        (
            {"columns": {"amount": {"cast": "float64", "clip": {"upper_quantile": 0.8}}}},
            lambda r: max(x["amount"] or 0 for x in r) < 1000,
        ),
        # collapse spaces + empty as null
        (
            {"columns": {"email": {"normalize": {"collapse_spaces": True, "empty_as_null": True}}}},
            lambda r: by(r, "id")[6]["email"] == "f@x",
        ),
    ],
)
def test_each_rule(spec: dict, check) -> None:
    rows, counts, _ = run(MESSY, spec)
    assert check(rows), rows
    assert counts[0] == MESSY.num_rows


def test_filter_dedupe_and_counts_balance() -> None:
    spec = {
        "where": "amount IS NULL OR amount < 500",
        "columns": {"amount": {"cast": "float64"}, "email": {"nulls": "drop"}},
        "dedupe": {"keys": ["id"], "keep_latest_by": "updated"},
    }
    rows, (read, filtered, deduplicated), adds_reason = run(MESSY, spec)
    assert not adds_reason
    assert {r["id"] for r in rows} == {1, 3, 4, 6}  # 2: email NULL, 5: amount 1000 filtered
    assert (read, filtered, deduplicated) == (7, 2, 1)
    assert read == len(rows) + filtered + deduplicated


def test_cast_errors_to_quarantine_keep_their_row_and_null() -> None:
    spec = {
        "columns": {
            "amount": {"cast": "double", "on_cast_error": "quarantine", "nulls": "median"},
            "email": {"nulls": "drop"},
        }
    }
    rows, (read, filtered, _), adds_reason = run(MESSY, spec)
    assert adds_reason
    bad = [r for r in rows if r[REASON_COLUMN] is not None]
    assert [(r["id"], r[REASON_COLUMN], r["amount"]) for r in bad] == [(2, "amount.cast", None)]
    # id 2 has no email but is bound for quarantine, so it is not filtered away by `nulls: drop`
    assert filtered == 0 and read == 7
    assert by(rows, "id")[4]["amount"] == 3.0  # the genuine NULL is filled by the median


def test_unicode_nfc_and_upper() -> None:
    table = pa.table({"name": ["Cafe\u0301", "café"]})
    rows, _, _ = run(table, {"columns": {"name": {"normalize": {"unicode_nfc": True, "case": "upper"}}}})
    assert {r["name"] for r in rows} == {"CAFÉ"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"columns": {"nope": {"nulls": "drop"}}}, "clean.columns.nope: no column 'nope'"),
        ({"dedupe": {"keys": ["missing"]}}, "clean.dedupe.keys: no column 'missing'"),
        (
            {"columns": {"id": {"normalize": {"case": "lower"}}}},
            "clean.columns.id.normalize: column 'id' is BIGINT, not a string",
        ),
        (
            {"columns": {"level": {"nulls": {"strategy": "forward_fill", "order_by": "ts"}}}},
            "clean.columns.level.nulls: no column 'ts'",
        ),
    ],
)
def test_spec_that_does_not_fit_the_input_names_the_field(spec: dict, message: str) -> None:
    with pytest.raises(CleanError, match=message.replace(".", r"\.").replace("(", r"\(")):
        clean_sql("src", CleanSpec.model_validate(spec), {f.name: str(f.type) for f in MESSY.schema})


def test_identifiers_are_quoted() -> None:
    table = pa.table({'we"ird col': [" x ", None], "select": [1, 2]})
    rows, _, _ = run(
        table,
        {"columns": {'we"ird col': {"nulls": {"strategy": "constant", "value": "it's"}}, "select": {"nulls": "drop"}}},
    )
    assert sorted(r['we"ird col'] for r in rows) == [" x ", "it's"]
