"""When the data moves, through the real core and TableAdapter into real Delta tables:

- an incremental SQLite source and an incremental HTTP API with nothing new commit nothing and stay
  Healthy (the empty batch's column types never meet the table's schema); new rows are picked up;
- a landing folder (`ingest: new_files`) ingests each file once, the list kept in the commit metadata;
- a description-only edit is a metadata update (the Delta table's description), dependents untouched;
- a rebuild that writes the same rows records the same content digest, so what follows it keeps its data;
- the plan says what apply then does, for each of these (follows, metadata update, forced sync).
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from deltalake import DeltaTable

from daemon.core.plan import SYNC_REASON, Op, make_plan
from flows.tables import DATA_DIGEST, INGESTED
from flows.tables.delta_log import read_table_log
from tests.conftest import http_server
from tests.helpers.incremental_api import IncrementalApi
from tests.helpers.tables import TableWorld

pytestmark = pytest.mark.integration

BRONZE_SQL = """
source:
  type: sql
  url: sqlite:///orders.db
  query: SELECT id, amount FROM orders
incremental: {cursor: id}
write: {mode: append}
"""
SILVER = """
description: {description}
source: {{type: table, inputs: [bronze], sql: "SELECT id, amount * 2 AS doubled FROM bronze"}}
"""


def _db(world: TableWorld, rows: range) -> None:
    path = world.repo / "orders.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, amount REAL)")
        connection.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 1.5) for i in rows])


def _sync(world: TableWorld, *keys: str) -> tuple[list, list[tuple[str, str, str]]]:
    """A forced refresh (`specd sync`): the plan, then what apply did per action."""
    graph, ctx = world.graph()
    from daemon.adapters.tables.adapter import TableAdapter

    adapter = TableAdapter(ctx)
    plan = make_plan(ctx.revision, "dev", graph, adapter.observe(graph.resources), describe=adapter.describe, forced=keys)
    done = [(a.name, str(a.op), adapter.apply(a, graph.by_key()[a.key]).message) for a in plan.changes]
    return list(plan.changes), done


def _versions(world: TableWorld, name: str) -> int:
    log = read_table_log(world.uri(name))
    assert log is not None
    return log.version


def test_incremental_sqlite_no_new_rows_is_healthy_and_new_rows_follow(world: TableWorld) -> None:
    _db(world, range(1, 6))
    world.write("specs/tables/bronze.yaml", BRONZE_SQL)
    world.write("specs/tables/silver.yaml", SILVER.format(description="doubled"))
    world.converge()
    assert (_versions(world, "bronze"), _versions(world, "silver")) == (0, 0)

    planned, done = _sync(world, "table/bronze")
    assert [(a.name, str(a.op)) for a in planned] == [("bronze", "update"), ("silver", "update")]
    assert planned[0].reason == SYNC_REASON and planned[1].follows == ("table/bronze",)
    assert "if its data changed" in planned[1].summary  # the plan says silver only rebuilds if bronze moved
    assert "no new rows" in done[0][2]  # was: "id: table has int64, output has string"
    assert done[1][2] == "upstream data unchanged: nothing rebuilt"
    assert (_versions(world, "bronze"), _versions(world, "silver")) == (0, 0)  # nothing committed
    plan, _, adapter = world.plan()
    observed = adapter.observe(world.graph()[0].resources)
    assert observed["table/bronze"].health == "Healthy" and not plan.has_changes

    _db(world, range(6, 9))
    planned, done = _sync(world, "table/bronze")
    assert done[0][2].startswith("v1: 3 rows written") and done[1][2].startswith("v1:")
    assert DeltaTable(world.uri("silver")).to_pyarrow_table().num_rows == 8
    assert not world.plan()[0].has_changes


def test_incremental_http_no_new_rows_then_new_rows(world: TableWorld) -> None:
    IncrementalApi.records = [{"id": i, "name": f"n{i}"} for i in range(1, 4)]
    with http_server(IncrementalApi) as port:
        world.write("specs/tables/events.yaml", f"""
            source: {{type: http, url: "http://127.0.0.1:{port}/events", records: items, cursor_param: since}}
            incremental: {{cursor: id}}
            write: {{mode: append}}
            """)
        world.converge()
        assert _versions(world, "events") == 0
        _, done = _sync(world, "table/events")
        assert "no new rows" in done[0][2] and _versions(world, "events") == 0
        IncrementalApi.records.append({"id": 4, "name": "n4"})
        _, done = _sync(world, "table/events")
        assert done[0][2].startswith("v1: 1 rows written")
    assert DeltaTable(world.uri("events")).to_pyarrow_table().num_rows == 4


def test_landing_folder_ingests_each_file_once(world: TableWorld) -> None:
    landing = world.repo / "landing"
    landing.mkdir(parents=True)
    (landing / "a.csv").write_text("id,v\n1,10\n2,20\n")
    world.write("specs/tables/landed.yaml", """
        source: {type: file, path: "landing/*.csv", format: csv, ingest: new_files}
        write: {mode: append}
        """)
    world.converge()
    (landing / "b.csv").write_text("id,v\n3,30\n")
    plan, _, _ = world.plan()
    assert [(a.name, str(a.op)) for a in plan.changes] == [("landed", "update")]  # a new file is an input change
    world.converge()
    table = DeltaTable(world.uri("landed")).to_pyarrow_table()
    assert sorted(table.column("id").to_pylist()) == [1, 2, 3]  # a.csv once, b.csv once
    log = read_table_log(world.uri("landed"))
    assert json.loads(log.latest.metadata[INGESTED]) == ["landing/a.csv", "landing/b.csv"]
    _, done = _sync(world, "table/landed")
    assert "no new rows" in done[0][2] and log.version == _versions(world, "landed")


def test_description_edit_is_a_metadata_update_and_same_rows_keep_their_digest(world: TableWorld) -> None:
    _db(world, range(1, 6))
    world.write("specs/tables/bronze.yaml", BRONZE_SQL)
    world.write("specs/tables/silver.yaml", SILVER.format(description="doubled"))
    world.converge()
    silver_version = _versions(world, "silver")
    digest = read_table_log(world.uri("silver")).latest.metadata[DATA_DIGEST]

    world.write("specs/tables/silver.yaml", SILVER.format(description="amount, doubled") + "owners: [ana]\n")
    plan, _, _ = world.plan()
    assert [(a.name, str(a.op), a.reason) for a in plan.changes] == [("silver", "update", "metadata update: description, owners")]
    assert "no rebuild" in plan.changes[0].summary
    done = world.converge()
    assert "metadata updated" in done[0][2]
    table = DeltaTable(world.uri("silver"))
    assert table.metadata().description == "amount, doubled" and table.metadata().name == "silver"
    assert table.version() == silver_version + 1
    assert len(table.get_add_actions()) == 1  # no data file written
    assert not world.plan()[0].has_changes

    # A shaping change that writes the same rows: a rebuild, same content digest.
    world.write("specs/tables/silver.yaml", SILVER.format(description="amount, doubled") + "owners: [ana]\nquality: {columns: {id: {not_null: true}}}\n")
    plan, _, _ = world.plan()
    assert [(a.name, str(a.op)) for a in plan.changes] == [("silver", "update")]
    world.converge()
    assert read_table_log(world.uri("silver")).latest.metadata[DATA_DIGEST] == digest


def test_plan_predicts_apply_for_a_cascade(world: TableWorld) -> None:
    """Every changing action's plan line against what apply reported, for a forced sync with and
    without new data, and a shaping change of the upstream."""
    _db(world, range(1, 4))
    world.write("specs/tables/bronze.yaml", BRONZE_SQL)
    world.write("specs/tables/silver.yaml", SILVER.format(description="x"))
    world.converge()
    cases = []
    cases.append(_sync(world, "table/bronze"))  # nothing new
    _db(world, range(4, 6))
    cases.append(_sync(world, "table/bronze"))  # new rows
    for planned, done in cases:
        for action, (name, op, message) in zip(planned, done, strict=True):
            assert action.name == name and str(action.op) == op
            if action.follows:  # conditional: rebuilt exactly when the upstream committed
                upstream_committed = not done[0][2].startswith("no new rows")
                assert (message == "upstream data unchanged: nothing rebuilt") != upstream_committed
    assert Op.UPDATE in {a.op for a in cases[1][0]}


def _expected(action) -> callable:
    """What apply must report for a planned table action, read from the plan line alone."""
    if action.reason.startswith("metadata update"):
        return lambda m: m.startswith("metadata updated")
    if str(action.op) == "restore":
        return lambda m: m.startswith(f"restored version {action.restore_from} ")
    if "if its data changed" in action.summary:
        return lambda m: m == "upstream data unchanged: nothing rebuilt" or m.startswith("v")
    return lambda m: m.startswith("v") and "rows" in m


def test_plan_predicts_apply_for_every_op_of_the_example_tables(examples: TableWorld) -> None:
    """create → shaping change (dependents follow) → metadata-only edit → revert (restore): every
    changing action of every plan against what apply then reported."""
    bronze = examples.repo / "specs" / "tables" / "bronze_penguins.yaml"
    original = bronze.read_text()
    steps = [
        ("create", None),
        ("update", original.replace("nullstr: NA", "nullstr: NA\n    header: true")),
        ("metadata", original.replace("nullstr: NA", "nullstr: NA\n    header: true").replace("as published", "as shipped")),
        ("restore", original.replace("as published", "as shipped")),
    ]
    seen_ops = set()
    for name, text in steps:
        if text is not None:
            bronze.write_text(text)
        plan, graph, adapter = examples.plan()
        assert plan.has_changes, name
        for action in plan.changes:
            message = adapter.apply(action, graph.by_key().get(action.key)).message
            assert _expected(action)(message), (name, action.key, str(action.op), action.reason, action.summary, message)
            seen_ops.add("metadata" if action.reason.startswith("metadata update") else str(action.op))
            if action.follows:
                seen_ops.add("follows")
        after = examples.plan()[0]
        assert not after.has_changes, (name, [(a.key, str(a.op), a.reason) for a in after.changes])  # converged: apply did what the plan said, all of it
    assert {"create", "update", "metadata", "restore", "follows"} <= seen_ops, seen_ops
