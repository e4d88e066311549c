"""Incremental ingestion is exactly-once: kill -9 the build process mid-write, re-run, and every row is
there once; a build killed between the table commit and the quarantine commit is completed next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

if TYPE_CHECKING:
    from tests.helpers.tables import TableWorld

pytestmark = pytest.mark.integration

EVENTS = """
source:
  type: synthetic
  rows: {rows}
  seed: 7
  batch_rows: 100000
  columns:
    - {{name: seq, kind: sequence}}
    - {{name: value, kind: float}}
    - {{name: label, kind: choice, values: [a, b, c]}}
incremental: {{cursor: seq}}
write: {{mode: append}}
"""


def _start_build(world: TableWorld, tmp: Path) -> tuple[subprocess.Popen, Path]:
    plan, graph, adapter = world.plan()
    (resource,) = [r for r in graph.resources if r.name == "events"]
    job, result = tmp / "job.json", tmp / "result.json"
    job.write_text(json.dumps(adapter.job_for(resource)))
    result.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "flows.tables.build", str(job), str(result)], cwd=str(Path(__file__).resolve().parents[2]))
    return process, result


def test_kill_9_mid_write_then_rerun_lands_every_row_once(world: TableWorld, tmp_path: Path) -> None:
    world.write("specs/tables/events.yaml", EVENTS.format(rows=1000))
    world.converge()
    table_dir = Path(world.uri("events"))
    before = DeltaTable(str(table_dir)).version()
    files_before = set(table_dir.glob("*.parquet"))

    world.write("specs/tables/events.yaml", EVENTS.format(rows=3_000_000))
    process, result = _start_build(world, tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (set(table_dir.glob("*.parquet")) - files_before):
        time.sleep(0.02)  # wait until the build is writing data files
    assert process.poll() is None, "the build finished before it could be killed; make it bigger"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not result.exists()
    table = DeltaTable(str(table_dir))
    assert table.version() == before and table.to_pyarrow_table().num_rows == 1000  # no half version

    world.converge()  # the re-run
    rows = DeltaTable(str(table_dir)).to_pyarrow_table(columns=["seq"]).column("seq")
    assert len(rows) == 3_000_000 and pc.count_distinct(rows).as_py() == 3_000_000
    meta = DeltaTable(str(table_dir)).history(1)[0]
    assert int(meta["specd.rows_read"]) == 2_999_000 and json.loads(meta["specd.watermark"])["value"] == 2_999_999
    assert DeltaTable(str(table_dir)).transaction_version("specd:events") == 2
    plan, _, _ = world.plan()
    assert not plan.has_changes  # and a repeated run would add nothing: the watermark moved with the rows


def test_quarantine_spool_of_a_committed_build_is_completed_exactly_once(world: TableWorld, tmp_path: Path) -> None:
    spec = EVENTS.format(rows=100) + "quality: {action: quarantine, columns: {label: {allowed: [a, b]}}}\n"
    world.write("specs/tables/events.yaml", spec)
    world.converge()
    quarantine = DeltaTable(world.uri("events__quarantine"))
    bad = quarantine.to_pyarrow_table()
    assert bad.num_rows > 0 and set(bad.column("label").to_pylist()) == {"c"}
    assert quarantine.transaction_version("specd:events__quarantine") == 1
    # Simulate a kill between the two commits of the next build: its table commit landed (batch 2), its
    # spool is complete on disk, its quarantine commit did not happen.
    spool_dir = world.home / "tables" / "quarantine-pending" / "events"
    spool_dir.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    extra = bad.slice(0, 3)
    pq.write_table(extra, spool_dir / f"{2:012d}.parquet")
    from deltalake import CommitProperties, Transaction, write_deltalake

    write_deltalake(world.uri("events"), DeltaTable(world.uri("events")).to_pyarrow_table().slice(0, 0), mode="append",
                    commit_properties=CommitProperties(app_transactions=[Transaction("specd:events", 2)]))
    world.write("specs/tables/events.yaml", spec.replace("rows: 100", "rows: 110"))
    world.converge()  # recovers batch 2's quarantine, then builds batch 3
    quarantine = DeltaTable(world.uri("events__quarantine"))
    assert quarantine.transaction_version("specd:events__quarantine") == 3
    batches = [entry.get("specd.batch") for entry in reversed(quarantine.history())]
    assert batches == ["1", "2", "3"]  # batch 2 recovered once, before batch 3
    meta = DeltaTable(world.uri("events")).history(1)[0]
    assert quarantine.to_pyarrow_table().num_rows == bad.num_rows + 3 + int(meta["specd.rows_quarantined"])
    world.converge()
    assert DeltaTable(world.uri("events__quarantine")).transaction_version("specd:events__quarantine") == 3
    assert not list(spool_dir.glob("*.parquet"))
