"""Operating between commits from the command line, without a daemon, on a real git repository:
`specd suspend/resume`, `specd sync` (one cycle for that resource, under the daemon lock), `specd history`,
`specd status` (suspended, age of the last sync), and `specd plan -out FILE` + `specd apply FILE` (exactly
that plan, or a refusal when the world moved)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from deltalake import DeltaTable

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e]


def specd(*args: str, repo, home, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    local = args[0] in ("suspend", "resume", "history")  # state-home commands: --home only
    cmd = [sys.executable, "-m", "daemon.cli", *args, *(() if local else ("--repo", str(repo))), "--home", str(home)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def _rows(db, ids) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v REAL)")
        connection.executemany("INSERT INTO t VALUES (?, ?)", [(i, i / 2) for i in ids])


def test_suspend_sync_history_and_saved_plans(spec_repo, home, tmp_path):
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    _rows(upstream / "t.db", range(1, 11))
    spec_repo.write("environments/dev.yaml", f"defaults: [base, _self_]\nname: dev\nstorage: {{data_root: {upstream}}}\n")
    spec_repo.write("specs/tables/raw.yaml", "source: {type: sql, url: 'sqlite:///t.db', query: 'SELECT id, v FROM t'}\n"
                    "incremental: {cursor: id}\nwrite: {mode: append}\n")
    spec_repo.write("specs/tables/doubled.yaml", "source: {type: table, inputs: [raw], sql: 'SELECT id, v * 2 AS v FROM raw'}\n")
    spec_repo.commit("tables")
    assert specd("apply", "--no-prefect", repo=spec_repo.path, home=home).returncode == 0

    # suspend: plan shows it with what it would do; apply leaves it alone; status says so
    assert "suspended" in specd("suspend", "table/doubled", "--reason", "backfill", repo=spec_repo.path, home=home).stdout
    spec_repo.write("specs/tables/doubled.yaml", "source: {type: table, inputs: [raw], sql: 'SELECT id, v * 3 AS v FROM raw'}\n")
    spec_repo.commit("triple")
    plan = json.loads(specd("plan", "--json", repo=spec_repo.path, home=home).stdout)
    doubled = next(a for a in plan["actions"] if a["name"] == "doubled")
    assert doubled["op"] == "suspended" and "would update" in doubled["reason"]
    assert plan["format_version"] == 2 and {"path": "source.sql", "before": "SELECT id, v * 2 AS v FROM raw",
                                              "after": "SELECT id, v * 3 AS v FROM raw"} in doubled["changes"]  # against the live spec
    version = DeltaTable(str(home / "lake" / "tables" / "doubled")).version()
    assert specd("apply", "--no-prefect", repo=spec_repo.path, home=home).returncode == 0
    assert DeltaTable(str(home / "lake" / "tables" / "doubled")).version() == version
    status = specd("status", repo=spec_repo.path, home=home).stdout
    assert "suspended; " in status and "LAST SYNC" in status
    assert "resumed" in specd("resume", "table/doubled", repo=spec_repo.path, home=home).stdout

    # plan -out, then the world moves (new rows synced): apply FILE refuses; a fresh plan applies exactly
    saved = tmp_path / "plan.json"
    out = specd("plan", "-out", str(saved), repo=spec_repo.path, home=home)
    assert out.returncode == 0 and "update" in out.stdout and saved.exists()
    _rows(upstream / "t.db", range(11, 16))
    synced = specd("sync", "table/raw", repo=spec_repo.path, home=home)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "update table/raw: succeeded v1: 5 rows written" in synced.stdout
    refused = specd("apply", "--no-prefect", str(saved), repo=spec_repo.path, home=home)
    assert refused.returncode == 1 and "the world moved" in refused.stderr and "table/raw: live state changed" in refused.stderr
    assert specd("plan", "-out", str(saved), repo=spec_repo.path, home=home).returncode == 0
    applied = specd("apply", "--no-prefect", str(saved), repo=spec_repo.path, home=home)
    assert applied.returncode == 0, applied.stderr
    tripled = sorted(DeltaTable(str(home / "lake" / "tables" / "doubled")).to_pyarrow_table().column("v").to_pylist())
    assert tripled == [i / 2 * 3 for i in range(1, 16)]  # the resumed change, on the synced rows
    assert specd("plan", "--detailed-exitcode", repo=spec_repo.path, home=home).returncode == 0

    history = specd("history", "table/raw", repo=spec_repo.path, home=home).stdout
    assert "ActionSucceeded" in history and "5 rows written" in history
    assert "Suspended" in specd("history", "table/doubled", "--json", repo=spec_repo.path, home=home).stdout
