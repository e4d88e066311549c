"""Tables on real Delta: the examples, merge, partitioning, schema policy, restore after a revert,
vacuum bounding restores, stale inputs, clear errors — all through the real adapter and build workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from daemon.core.executor import FAILED, ActionResult
from daemon.core.status import resource_statuses
from daemon.shared.errors import ApplyError

if TYPE_CHECKING:
    from tests.helpers.tables import TableWorld


pytestmark = pytest.mark.integration


def test_examples_build_with_lineage_accounting_and_the_gold_contract(examples: TableWorld) -> None:
    done = examples.converge()
    assert {name for name, op, _ in done} >= {"bronze_penguins", "silver_penguins", "gold_penguin_features", "silver_orders"}
    gold = DeltaTable(examples.uri("gold_penguin_features"))
    schema = pa.schema(gold.schema().to_arrow())
    assert [(f.name, str(f.type)) for f in schema] == [
        ("penguin_id", "int64"), ("species", "string"), ("island", "string"), ("bill_length_mm", "double"),
        ("bill_depth_mm", "double"), ("flipper_length_mm", "double"), ("body_mass_g", "double"), ("year", "int64"),
        ("is_male", "int64"),
    ]
    rows = gold.to_pyarrow_table()
    assert set(rows.column("is_male").to_pylist()) == {0, 1}
    assert len(set(rows.column("penguin_id").to_pylist())) == rows.num_rows == 333  # 344 - 2 unmeasured - 9 unknown sex
    meta = gold.history(1)[0]
    assert meta["specd.git_sha"].startswith("rev-") and len(meta["specd.fingerprint"]) == 64
    silver = DeltaTable(examples.uri("silver_orders")).history(1)[0]
    counts = {k: int(silver[f"specd.rows_{k}"]) for k in ("read", "written", "quarantined", "deduplicated", "filtered")}
    assert counts["read"] == counts["written"] + counts["quarantined"] + counts["deduplicated"] + counts["filtered"]
    assert counts["deduplicated"] == 6 and counts["quarantined"] > 0
    quarantine = DeltaTable(examples.uri("silver_orders__quarantine")).to_pyarrow_table()
    assert quarantine.num_rows == counts["quarantined"]
    reasons = set(quarantine.column("_specd_quarantine_reason").to_pylist())
    assert any("amount.cast" in r for r in reasons) and "amount.range" in reasons
    emails = DeltaTable(examples.uri("silver_orders")).to_pyarrow_table().column("customer_email").to_pylist()
    assert all(e is None or "*" in e for e in emails)  # masked before the write
    daily = DeltaTable(examples.uri("gold_order_daily"))
    assert daily.metadata().partition_columns == ["order_day"]
    assert sum(daily.to_pyarrow_table().column("orders").to_pylist()) == counts["written"]
    plan, _, _ = examples.plan()
    assert not plan.has_changes, plan.to_text()


def test_changed_input_file_makes_the_table_and_its_dependents_stale(examples: TableWorld) -> None:
    examples.converge()
    data = examples.repo / "specs" / "data" / "orders_raw.csv"
    data.write_text(data.read_text() + "999,new@example.com,paid,10.00,2024-03-09 10:00:00,2024-03-09 10:00:00\n")
    plan, _, _ = examples.plan()
    changed = {a.name: str(a.op) for a in plan.changes}
    assert changed == {"bronze_orders": "update", "silver_orders": "update", "gold_order_daily": "update"}, plan.to_text()
    assert "inputs changed" in plan.to_text()
    examples.converge()
    assert 999 in DeltaTable(examples.uri("silver_orders")).to_pyarrow_table().column("order_id").to_pylist()


ORDERS = "id,customer,amount\n" + "".join(f"{i},c{i % 3},{i}.5\n" for i in range(1, 21))
BRONZE = """
source: {type: file, path: data/orders.csv, format: csv}
"""
SILVER = """
source:
  type: table
  inputs: [bronze]
  sql: SELECT id, customer, amount FROM bronze WHERE amount > {limit}
"""


def test_revert_restores_the_earlier_version_without_recompute(world: TableWorld) -> None:
    world.write("data/orders.csv", ORDERS)
    world.write("specs/tables/bronze.yaml", BRONZE)
    world.write("specs/tables/silver.yaml", SILVER.replace("{limit}", "5"))
    world.converge()
    first = DeltaTable(world.uri("silver")).to_pyarrow_table().sort_by("id")
    world.write("specs/tables/silver.yaml", SILVER.replace("{limit}", "15"))
    assert [(n, op) for n, op, _ in world.converge()] == [("silver", "update")]
    assert DeltaTable(world.uri("silver")).to_pyarrow_table().num_rows == 6  # 15.5 .. 20.5
    world.write("specs/tables/silver.yaml", SILVER.replace("{limit}", "5"))  # the revert
    plan, _, _ = world.plan()
    assert [(a.name, str(a.op), a.restore_from) for a in plan.changes] == [("silver", "restore", "0")], plan.to_text()
    world.converge()
    table = DeltaTable(world.uri("silver"))
    assert table.history(1)[0]["operation"] == "RESTORE"
    assert table.to_pyarrow_table().sort_by("id").equals(first)
    assert not world.plan()[0].has_changes


def test_vacuum_bounds_how_far_back_restore_works(world: TableWorld) -> None:
    world.write("data/orders.csv", ORDERS)
    world.write("specs/tables/bronze.yaml", BRONZE)
    world.write("specs/tables/silver.yaml", SILVER.replace("{limit}", "5"))
    world.converge()
    world.write("specs/tables/silver.yaml", SILVER.replace("{limit}", "15"))
    world.converge()
    from flows.tables.maintenance import vacuum

    removed = vacuum(world.uri("silver"), retention_hours=0)
    assert removed >= 1
    world.write("specs/tables/silver.yaml", SILVER.replace("{limit}", "5"))
    plan, _, _ = world.plan()
    assert [(a.name, str(a.op)) for a in plan.changes] == [("silver", "update")], plan.to_text()


def test_merge_upserts_on_keys_without_duplicates(world: TableWorld) -> None:
    world.write("data/orders.csv", ORDERS)
    world.write("specs/tables/orders.yaml", BRONZE + "write: {mode: merge, keys: [id]}\n")
    world.converge()
    changed = ORDERS.replace("1,c1,1.5\n", "1,changed,100.0\n").replace("20,c2,20.5\n", "") + "99,new,1.0\n"
    world.write("data/orders.csv", changed)
    world.converge()
    table = DeltaTable(world.uri("orders"))
    rows = {r["id"]: r for r in table.to_pyarrow_table().to_pylist()}
    assert len(rows) == 20 and rows[1]["customer"] == "changed" and rows[99]["amount"] == 1.0 and rows[2]["customer"] == "c2"
    assert 20 not in rows  # a full (non-incremental) source is mirrored: keys that left it are deleted
    assert table.history(1)[0]["operation"] == "MERGE"


def test_enforce_fails_with_a_readable_diff_and_evolve_adds_columns(world: TableWorld) -> None:
    world.write("data/orders.csv", ORDERS)
    world.write("specs/tables/orders.yaml", BRONZE + "write: {mode: merge, keys: [id]}\n")
    world.converge()
    version = DeltaTable(world.uri("orders")).version()
    with_channel = "id,customer,amount,channel\n" + "".join(line + ",web\n" for line in ORDERS.splitlines()[1:])
    world.write("data/orders.csv", with_channel)
    with pytest.raises(ApplyError) as failure:
        world.converge()
    message = str(failure.value)
    assert "table orders" in message and "+ channel: string" in message
    assert DeltaTable(world.uri("orders")).version() == version  # nothing written
    world.write("specs/tables/orders.yaml", BRONZE + "write: {mode: merge, keys: [id]}\nschema: {policy: evolve}\n")
    world.converge()
    table = DeltaTable(world.uri("orders")).to_pyarrow_table()
    assert table.column("channel").to_pylist() == ["web"] * 20 and table.num_rows == 20
    world.write("data/orders.csv", "id,customer,amount\n1,x,oops\n")
    with pytest.raises(ApplyError, match="~ amount: table has double, output has string"):
        world.converge()


def test_missing_file_is_a_clear_error_naming_table_and_path(world: TableWorld) -> None:
    world.write("specs/tables/orders.yaml", BRONZE)
    with pytest.raises(ApplyError) as failure:
        world.converge()
    assert "table orders" in str(failure.value) and "data/orders.csv" in str(failure.value)
    assert not (world.home / "lake" / "tables" / "orders" / "_delta_log").exists()


def test_callable_source_is_limited_to_the_allowlist(world: TableWorld) -> None:
    world.write("specs/tables/evil.yaml", "source: {type: callable, _target_: os.system, args: {command: 'true'}}\n")
    with pytest.raises(ApplyError, match="not on the allowlist"):
        world.converge()
    world.write("specs/tables/evil.yaml", """
    source:
      type: callable
      _target_: flows.tables.sources.synthetic.generate
      args: {rows: 10, columns: [{name: n, kind: sequence}]}
    """)
    world.converge()
    assert DeltaTable(world.uri("evil")).to_pyarrow_table().column("n").to_pylist() == list(range(10))


def test_removed_spec_is_orphaned_or_deleted_by_prune_policy(world: TableWorld) -> None:
    world.write("data/orders.csv", ORDERS)
    world.write("specs/tables/keep.yaml", BRONZE)
    world.write("specs/tables/gone.yaml", BRONZE + "prune: true\n")
    world.converge()
    (world.repo / "specs/tables/keep.yaml").unlink()
    (world.repo / "specs/tables/gone.yaml").unlink()
    world.write("specs/tables/other.yaml", BRONZE)
    plan, _, _ = world.plan()
    ops = {a.name: str(a.op) for a in plan.actions}
    assert ops["keep"] == "orphan" and ops["gone"] == "delete"
    world.converge()
    assert not (world.home / "lake" / "tables" / "gone").exists() and (world.home / "lake" / "tables" / "keep").exists()


def test_quality_fail_writes_nothing_and_reports_degraded(world: TableWorld) -> None:
    world.write("data/orders.csv", ORDERS)
    world.write("specs/tables/orders.yaml", BRONZE + "quality: {action: fail, columns: {amount: {max: 10}}}\n")
    with pytest.raises(ApplyError, match="quality checks failed"):
        world.converge()
    assert not (world.home / "lake" / "tables" / "orders" / "_delta_log").exists()
    world.write("specs/tables/orders.yaml", BRONZE)
    world.converge()
    world.write("specs/tables/orders.yaml", BRONZE + "quality: {action: fail, columns: {amount: {max: 10}}}\n")
    with pytest.raises(ApplyError) as failure:
        world.converge()
    assert failure.value.reason == "QualityFailed" and "amount.range" in str(failure.value)  # no side file: the reason travels
    plan, graph, adapter = world.plan()
    observed = adapter.observe(graph.resources)
    assert observed["table/orders"].health == "Healthy"  # the last good version is still what is live
    result = ActionResult("table/orders", "update", FAILED, str(failure.value), reason=failure.value.reason)
    (status,) = resource_statuses(graph, observed, "rev", {"table/orders": result})
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert status.health == "Degraded" and stalled.reason == "QualityFailed" and "amount.range" in stalled.message
    assert not (world.home / "tables" / "status").exists()
