"""Deduplication: the one-pass window (row_number + key-group size) keeps exactly what the former
`QUALIFY row_number() OVER (PARTITION BY keys ORDER BY latest DESC NULLS LAST) = 1` kept, on data full
of NULLs (in the order column and in the keys) and ties; and the group sizes it carries count the
deduplicated rows exactly."""

from __future__ import annotations

from collections import defaultdict

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from flows.tables.clean import GROUP_ROWS, dedupe_sql

REFERENCE = "SELECT * FROM {src} QUALIFY row_number() OVER (PARTITION BY {keys}{order}) = 1"


def messy(seed: int, rows: int = 4000, tie_rows_identical: bool = False) -> pa.Table:
    """Few distinct keys (many duplicates), NULL keys, NULL and tied `updated` values, all-NULL groups."""
    rng = np.random.default_rng(seed)
    k1 = rng.integers(0, 300, rows)
    k2 = rng.choice(np.array(["a", "b", None], dtype=object), rows)
    updated = rng.integers(0, 4, rows).astype(float)  # 4 values: ties everywhere
    updated[rng.random(rows) < 0.3] = np.nan
    updated[k1 % 37 == 0] = np.nan  # whole groups without any order value
    payload = rng.integers(0, 1000, rows)
    null_key = rng.random(rows) < 0.05
    if tie_rows_identical:  # every tied row identical (NULL keys included): the kept row is fully determined
        payload = (np.where(null_key, -1, k1) * 7 + np.nan_to_num(updated, nan=-1) * 1000).astype(np.int64)
    return pa.table({
        "k1": pa.array(k1, mask=null_key),
        "k2": pa.array(k2, type=pa.string()),
        "updated": pa.array(updated, from_pandas=True).cast(pa.int64()).cast(pa.timestamp("us")),
        "payload": pa.array(payload),
    })


def run(sql: str, data: pa.Table, stream: bool) -> pa.Table:
    connection = duckdb.connect()
    connection.execute("SET preserve_insertion_order = false")
    connection.register("src", data.to_reader(max_chunksize=512) if stream else data)
    return connection.sql(sql).to_arrow_table()


def groups(table: pa.Table, keys: list[str]) -> dict[tuple, list[dict]]:
    found = defaultdict(list)
    for row in table.to_pylist():
        found[tuple(row[k] for k in keys)].append(row)
    return found


def best(rows: list[dict], latest: str | None) -> list[dict]:
    """The rows a keep-latest dedupe may keep: those with the largest non-NULL value, else all."""
    if latest is None:
        return rows
    present = [r for r in rows if r[latest] is not None]
    if not present:
        return rows
    top = max(r[latest] for r in present)
    return [r for r in present if r[latest] == top]


@pytest.mark.parametrize("keys,latest", [(["k1"], "updated"), (["k1", "k2"], "updated"), (["k2"], None)])
@pytest.mark.parametrize("stream", [False, True])
def test_window_dedupe_keeps_what_qualify_kept(keys: list[str], latest: str | None, stream: bool) -> None:
    data = messy(seed=len(keys) + (7 if latest else 0))
    key_sql = ", ".join(f'"{k}"' for k in keys)
    order = f' ORDER BY "{latest}" DESC NULLS LAST' if latest else ""
    reference = run(REFERENCE.format(src="src", keys=key_sql, order=order), data, stream)
    ours = run(dedupe_sql("src", keys, latest), data, stream)
    assert ours.schema == reference.schema and ours.num_rows == reference.num_rows
    inputs, kept_ref, kept = groups(data, keys), groups(reference, keys), groups(ours, keys)
    assert kept.keys() == kept_ref.keys() == inputs.keys()  # one row per key, NULL keys grouped as in GROUP BY
    for key, rows in inputs.items():
        allowed = best(rows, latest)
        assert len(kept[key]) == 1 and kept[key][0] in allowed, key  # the latest (NULLs last); ties: any of them
        assert kept_ref[key][0] in allowed
        if latest:
            assert kept[key][0][latest] == kept_ref[key][0][latest]


@pytest.mark.parametrize("stream", [False, True])
def test_identical_ties_give_identical_tables(stream: bool) -> None:
    data = messy(seed=3, tie_rows_identical=True)
    reference = run(REFERENCE.format(src="src", keys='"k1", "k2"', order=' ORDER BY "updated" DESC NULLS LAST'), data, stream)
    ours = run(dedupe_sql("src", ["k1", "k2"], "updated"), data, stream)
    order = [("k1", "ascending"), ("k2", "ascending"), ("payload", "ascending")]
    assert ours.sort_by(order).equals(reference.sort_by(order))


def test_group_rows_count_the_deduplicated_rows() -> None:
    data = messy(seed=5)
    ours = run(dedupe_sql("src", ["k1", "k2"], "updated", GROUP_ROWS), data, stream=True)
    sizes = {key: len(rows) for key, rows in groups(data, ["k1", "k2"]).items()}
    for row in ours.to_pylist():
        assert row[GROUP_ROWS] == sizes[(row["k1"], row["k2"])]
    assert sum(ours.column(GROUP_ROWS).to_pylist()) == data.num_rows
    assert ours.schema.names[-1] == GROUP_ROWS
    assert GROUP_ROWS not in run(dedupe_sql("src", ["k1"], "updated"), data, stream=True).schema.names
