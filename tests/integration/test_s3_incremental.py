"""Incremental tables on S3 (moto_server on 127.0.0.1) are exactly-once as on local disk: the app
transaction and watermark commit with the rows, a build killed -9 mid-write leaves no half version and
the re-run lands every row once; compaction + vacuum run with the lake's options, and observe then knows
the vacuumed versions can no longer be restored (one listing of the table's prefix)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from tests.helpers.tables import TableWorld

pytestmark = pytest.mark.integration

EVENTS = """
source:
  type: synthetic
  rows: {rows}
  seed: 7
  batch_rows: 20000
  columns:
    - {{name: seq, kind: sequence}}
    - {{name: value, kind: float}}
    - {{name: label, kind: choice, values: [a, b, c]}}
incremental: {{cursor: seq}}
write: {{mode: append}}
quality: {{action: quarantine, columns: {{label: {{allowed: [a, b]}}}}}}
"""


@pytest.fixture
def s3_world(world: TableWorld, s3_server, s3_bucket) -> tuple[TableWorld, str, dict[str, str]]:
    root = f"s3://{s3_bucket}/lake"
    options = "\n".join(f"    {k}: {v}" if v.startswith("${") else f"    {k}: \"{v}\"" for k, v in s3_server.spec_options().items())
    dev = world.repo / "environments" / "dev.yaml"
    dev.write_text(dev.read_text() + f"storage:\n  root: {root}\n  storage_options:\n{options}\n")
    return world, root, s3_server.options()


def test_incremental_builds_kill_9_vacuum_on_s3(s3_world, tmp_path: Path) -> None:
    from daemon.shared import storage_uri
    from flows.tables.maintenance import maintain

    world, root, options = s3_world
    uri = f"{root}/tables/events"
    world.write("specs/tables/events.yaml", EVENTS.format(rows=1000))
    world.converge()
    first = DeltaTable(uri, storage_options=options)
    kept = pc.sum(pc.is_in(first.to_pyarrow_table().column("label"), value_set=__import__("pyarrow").array(["a", "b"]))).as_py()
    assert first.version() == 0 and first.to_pyarrow_table().num_rows == kept
    assert DeltaTable(f"{uri}__quarantine", storage_options=options).to_pyarrow_table().num_rows == 1000 - kept

    # kill -9 while the next build writes its staged files to S3
    world.write("specs/tables/events.yaml", EVENTS.format(rows=200_000))
    _, graph, adapter = world.plan()
    (resource,) = [r for r in graph.resources if r.name == "events"]
    job, result = tmp_path / "job.json", tmp_path / "result.json"
    job.write_text(json.dumps(adapter.job_for(resource)))
    before = set(storage_uri.list_files(uri, options))
    process = subprocess.Popen([sys.executable, "-m", "flows.tables.build", str(job), str(result)],
                               cwd=str(Path(__file__).resolve().parents[2]), env={**os.environ})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (set(storage_uri.list_files(uri, options)) - before) and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the build finished before it could be killed; make it bigger"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    table = DeltaTable(uri, storage_options=options)
    assert table.version() == 0 and table.to_pyarrow_table().num_rows == kept  # no half version

    world.converge()  # the re-run: every new row once, the watermark and app transaction with them
    table = DeltaTable(uri, storage_options=options)
    quarantine = DeltaTable(f"{uri}__quarantine", storage_options=options)
    seqs = pc.unique(pa_concat(table, quarantine)).to_pylist()
    assert table.to_pyarrow_table().num_rows + quarantine.to_pyarrow_table().num_rows == 200_000 == len(seqs)
    assert table.transaction_version("specd:events") == 2
    assert json.loads(table.history(1)[0]["specd.watermark"])["value"] == 199_999
    plan, _, _ = world.plan()
    assert not plan.has_changes

    # compaction + vacuum with the lake's options: the killed build's orphans and the old files go
    rows = table.to_pyarrow_table().num_rows
    report = maintain(root, "events", target_file_mb=64, vacuum_hours=0, options=options)
    assert report["events.compacted_files"] > 1 and report["events.vacuumed_files"] > 0
    assert DeltaTable(uri, storage_options=options).to_pyarrow_table().num_rows == rows
    from flows.tables.delta_log import read_table_log

    log = read_table_log(uri, options)
    assert log is not None and log.latest is not None and log.latest.complete
    assert not next(c for c in log.commits if c.version == 0).complete  # vacuumed: no longer restorable


def pa_concat(table: DeltaTable, quarantine: DeltaTable):
    import pyarrow as pa

    return pa.chunked_array(table.to_pyarrow_table(columns=["seq"]).column("seq").chunks
                            + quarantine.to_pyarrow_table(columns=["seq"]).column("seq").chunks)
