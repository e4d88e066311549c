"""Faults and edge cases of the table pipeline, through the real adapter into real Delta tables:

- a source failing inside the stream DuckDB reads keeps its own error and transient-ness (an API's 503
  on page 2 is retried by the daemon; a 404 or a bad record is not);
- an incremental API build that gets no records at all is a clean "no new rows";
- table checks (row count, freshness) and failure counts over a read-once stream with no clean stage;
- the callable `_target_` allowlist comes from the environment overlay (the env var overrides it).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from deltalake import DeltaTable

from daemon.shared.errors import ApplyError

if TYPE_CHECKING:
    from tests.helpers.tables import TableWorld
    from tests.helpers.tables_faults import ScriptedApi

pytestmark = pytest.mark.integration
MODULE = "tests.helpers.tables_faults"  # allowed through the environment overlay

HTTP = """
source:
  type: http
  url: {url}
  pagination: {{style: page, page_size: 5}}
  batch_rows: 5  # one page per batch: page 2 is fetched while DuckDB scans the stream
  max_retries: 1
  backoff_s: 0.01
"""
INCREMENTAL = HTTP + """  cursor_param: since
incremental: {{cursor: id}}
write: {{mode: append}}
"""


def allow_this_module(world: TableWorld) -> None:
    with open(world.repo / "environments" / "dev.yaml", "a") as handle:
        handle.write(f"tables:\n  callable_modules: [{MODULE}]\n")


def test_a_failure_on_a_later_page_keeps_the_sources_error_and_transience(world: TableWorld, api: ScriptedApi) -> None:
    world.write("specs/tables/items.yaml", HTTP.format(url=api.url()))
    api.fail_pages = {2: 503}  # page 1 streams into DuckDB first; page 2 fails inside its scan
    with pytest.raises(ApplyError) as failure:
        world.converge()
    assert failure.value.transient, failure.value  # the daemon retries it
    assert "table items" in str(failure.value) and "HTTP 503" in str(failure.value)
    assert failure.value.reason == "SourceFailed"
    assert not (world.home / "lake" / "tables" / "items" / "_delta_log").exists()  # nothing half-written

    api.fail_pages = {2: 404}
    with pytest.raises(ApplyError) as failure:
        world.converge()
    assert not failure.value.transient and "answered 404" in str(failure.value)

    api.fail_pages = {}
    world.converge()
    assert DeltaTable(world.uri("items")).to_pyarrow_table().num_rows == 12


@pytest.mark.parametrize("transient", [True, False])
def test_a_callable_failing_mid_stream_is_a_source_failure(world: TableWorld, transient: bool) -> None:
    allow_this_module(world)
    world.write("specs/tables/flaky.yaml", f"""
    source: {{type: callable, _target_: {MODULE}:stream_then_fail, args: {{rows: 10, transient: {str(transient).lower()}}}}}
    """)
    with pytest.raises(ApplyError) as failure:
        world.converge()
    assert failure.value.transient is transient
    expected = "ConnectionResetError: connection reset" if transient else "ValueError: record 7 has no id"
    assert "table flaky: the source failed while streaming" in str(failure.value) and expected in str(failure.value)
    assert failure.value.reason == "SourceFailed"


def test_an_incremental_api_with_nothing_new_is_a_clean_no_op(world: TableWorld, api: ScriptedApi) -> None:
    world.write("specs/tables/items.yaml", INCREMENTAL.format(url=api.url()))
    world.converge()
    table = DeltaTable(world.uri("items"))
    first = table.history(1)[0]
    assert table.version() == 0 and json.loads(first["specd.watermark"])["value"] == 12

    plan, graph, adapter = world.plan()  # a scheduled refresh: the API has no record past id 12
    assert not plan.has_changes
    outcome = adapter.build(graph.by_key()["table/items"])
    assert outcome.message == "no new rows since the watermark" and outcome.details["rows"]["read"] == 0
    assert DeltaTable(world.uri("items")).version() == 0  # no commit

    # a shaping change (a description would be a metadata update, see test_tables_data_moves)
    world.write("specs/tables/items.yaml", INCREMENTAL.format(url=api.url()) + "schema: {policy: evolve}\n")
    assert [(name, op) for name, op, _ in world.converge()] == [("items", "update")]
    table = DeltaTable(world.uri("items"))
    empty = table.history(1)[0]  # a spec change with nothing new: lineage only, same watermark and data id
    assert table.version() == 1 and table.to_pyarrow_table().num_rows == 12
    assert empty["specd.watermark"] == first["specd.watermark"] and empty["specd.data_id"] == first["specd.data_id"]
    assert empty["specd.rows_read"] == "0" and empty["specd.fingerprint"] != first["specd.fingerprint"]
    assert not world.plan()[0].has_changes

    api.records += [{"id": i, "name": f"item-{i}", "price": 1.0} for i in (13, 14, 15)]
    plan, graph, adapter = world.plan()
    adapter.build(graph.by_key()["table/items"])
    ids = DeltaTable(world.uri("items")).to_pyarrow_table().column("id").to_pylist()
    assert sorted(ids) == list(range(1, 16))


def test_a_full_api_table_with_no_records_says_so(world: TableWorld, api: ScriptedApi) -> None:
    api.records = []
    world.write("specs/tables/items.yaml", HTTP.format(url=api.url()))
    with pytest.raises(ApplyError, match="table items: the source returned no records") as failure:
        world.converge()
    assert failure.value.reason == "EmptySource"


def test_table_checks_and_failure_counts_over_a_read_once_stream(world: TableWorld) -> None:
    allow_this_module(world)
    world.write("specs/tables/events.yaml", f"""
    source: {{type: callable, _target_: {MODULE}:one_shot_events, args: {{rows: 8, hours_old: 1000000}}}}
    quality:
      action: warn
      columns:
        amount: {{min: 0}}
        label: {{not_null: true}}
      rules:
        small: amount < 5
      row_count: {{max: 5}}
      freshness: {{column: ts, max_age: 24h}}
    """)
    world.converge()
    table = DeltaTable(world.uri("events"))
    meta = table.history(1)[0]
    quality = json.loads(meta["specd.quality"])
    assert table.to_pyarrow_table().num_rows == 8 and meta["specd.rows_read"] == "8"  # the stream was read once
    assert quality["status"] == "warned"
    assert quality["failures"] == {"amount.range": 2, "label.not_null": 1, "rule.small": 3,
                                   "table.row_count": 1, "table.freshness": 1}
    assert quality["table_checks"]["table.row_count"] == "8 rows (expected ≤5)"
    assert "newest ts is" in quality["table_checks"]["table.freshness"]

    world.write("specs/tables/events.yaml", f"""
    source: {{type: callable, _target_: {MODULE}:one_shot_events, args: {{rows: 8, hours_old: 1}}}}
    quality: {{action: fail, row_count: {{min: 8, max: 8}}, freshness: {{column: ts, max_age: 24h}}}}
    """)
    world.converge()  # both table checks pass on the streamed rows: the build is not failed
    assert json.loads(DeltaTable(world.uri("events")).history(1)[0]["specd.quality"])["status"] == "passed"


def test_callable_allowlist_comes_from_the_environment_overlay(world: TableWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    world.write("specs/tables/events.yaml", f"""
    source: {{type: callable, _target_: {MODULE}:one_shot_events, args: {{rows: 4, hours_old: 1}}}}
    """)
    with pytest.raises(ApplyError, match="not on the allowlist"):
        world.converge()
    allow_this_module(world)
    monkeypatch.setenv("SPECD_TABLE_CALLABLE_MODULES", "flows.tables.sources.")  # the override wins
    with pytest.raises(ApplyError, match="not on the allowlist"):
        world.converge()
    monkeypatch.delenv("SPECD_TABLE_CALLABLE_MODULES")
    world.converge()
    assert DeltaTable(world.uri("events")).to_pyarrow_table().num_rows == 4
