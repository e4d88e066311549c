"""End to end, the real daemon (`specd run`) on a real git repository, while the data moves between commits:
an incremental SQLite source and an incremental HTTP API (a local server on 127.0.0.1) feed a gold table
and a model with `retrain: {on: new_data, min_new_rows: 50}`.

- new rows land; `specd sync` (talking to the running daemon) pulls them, gold follows, and the model
  follows only when the policy fires: +30 rows keep the release (status: OutOfSync, "data ahead by 30
  rows"), +100 retrain it through the candidate/promotion path, the lineage names the data version;
- an empty refresh is Healthy and rebuilds nothing;
- a description-only commit is a metadata update: no table rebuilt, no model trained;
- for every apply the plan's actions (with their "follows" and summaries) match what apply reported.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from tests.conftest import ROOT, http_server
from tests.helpers.incremental_api import IncrementalApi

pytestmark = [pytest.mark.e2e]


def _row(i: int) -> dict:
    x1, x2 = ((i * 37) % 101) / 50 - 1, ((i * 53) % 97) / 48 - 1
    return {"id": i, "x1": x1, "x2": x2, "label": int(x1 + 0.5 * x2 > 0)}


def _insert(db: Path, ids: range) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, x1 REAL, x2 REAL, label INTEGER)")
        connection.executemany("INSERT INTO rows VALUES (:id, :x1, :x2, :label)", [_row(i) for i in ids])


BRONZE_SQL = """
description: {description}
source: {{type: sql, url: "sqlite:///rows.db", query: "SELECT id, x1, x2, label FROM rows"}}
incremental: {{cursor: id}}
write: {{mode: append}}
"""
BRONZE_HTTP = """
source: {{type: http, url: "http://127.0.0.1:{port}/rows", records: items, cursor_param: since}}
incremental: {{cursor: id}}
write: {{mode: append}}
"""
GOLD = """
layer: gold
source:
  type: table
  inputs: [bronze_sql, bronze_http]
  sql: SELECT id, x1, x2, label FROM bronze_sql UNION ALL SELECT id, CAST(x1 AS DOUBLE), CAST(x2 AS DOUBLE), label FROM bronze_http
"""
MODEL = """
data: {table: gold, target: label, exclude: [id]}
task: binary
split: {holdout: 0.25, seed: 7}
model: {_target_: flows.training.models.LogisticBaseline}
optim: {name: adam, lr: 0.05}
trainer: {epochs: 5, batch_size: 64, seed: 7}
candidates: {a: []}
promotion: {metric: accuracy, min_improvement: 0.0}
retrain: {on: new_data, min_new_rows: 50}
"""


def _specd(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPECD_HOME": str(home), "BENTOML_HOME": str(home / "bentoml")}
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args, "--home", str(home)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _version(home: Path, name: str) -> int:
    return DeltaTable(str(home / "lake" / "tables" / name)).version()


def _plans_match_results(journal: list[dict], since: int) -> list[dict]:
    """Each ApplyStarted's planned actions against the results that followed it; returns the plans."""
    plans = []
    for index, event in enumerate(journal[since:], start=since):
        if event["type"] != "ApplyStarted":
            continue
        results = {}
        for later in journal[index + 1:]:
            if later["type"] == "ApplyStarted":
                break
            if later["type"] in ("ActionSucceeded", "ActionFailed", "ActionBlocked"):
                results[later["resource"]] = later
        planned = {p["resource"]: p for p in event["plan"]}
        assert set(planned) == set(results), (planned, results)
        for key, step in planned.items():
            result = results[key]
            assert result["type"] == "ActionSucceeded" and result["op"] == step["op"], (step, result)
            if key.startswith("model/") and step["op"] in ("create", "update"):
                trained = result["details"].get("trained")
                conditional = step["follows"] and "if its data changed" in step["summary"]
                if not conditional:  # the plan promised training: apply trained
                    assert trained, (step, result)
                    assert "train candidate" in step["summary"]
        plans.append(event)
    return plans


def test_data_moving_between_commits(spec_repo, home, daemon_factory, tmp_path):
    data = tmp_path / "upstream"
    data.mkdir()
    db = data / "rows.db"
    _insert(db, range(1, 301))
    IncrementalApi.records = [_row(i) for i in range(1001, 1101)]
    with http_server(IncrementalApi) as port:
        spec_repo.write("environments/dev.yaml", f"defaults: [base, _self_]\nname: dev\nstorage: {{data_root: {data}}}\n"
                        "daemon: {poll_interval_s: 2}\nschedules_enabled: false\n")
        spec_repo.write("specs/tables/bronze_sql.yaml", BRONZE_SQL.format(description="rows from the database"))
        spec_repo.write("specs/tables/bronze_http.yaml", BRONZE_HTTP.format(port=port))
        spec_repo.write("specs/tables/gold.yaml", GOLD)
        spec_repo.write("specs/models/churn.yaml", MODEL)
        sha = spec_repo.commit("pipeline")
        daemon = daemon_factory(spec_repo.path, use_prefect=False)
        daemon.wait_converged(sha, timeout=300)
        assert DeltaTable(str(home / "lake" / "tables" / "gold")).to_pyarrow_table().num_rows == 400
        release = json.loads((home / "bentoml" / "specd-releases" / "churn" / "current.json").read_text())
        first_release = release["fingerprint"]
        mark = len(daemon.journal())

        # An empty refresh: Healthy, nothing committed, nothing followed into a rebuild or a training.
        versions = {n: _version(home, n) for n in ("bronze_sql", "bronze_http", "gold")}
        done = _specd(home, "sync", "table/bronze_sql", "--repo", str(spec_repo.path))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "no new rows" in done.stdout and "upstream data unchanged: nothing rebuilt" in done.stdout
        assert {n: _version(home, n) for n in versions} == versions
        status = {f"{r['kind']}/{r['name']}": r for r in daemon.status()["resources"]}
        assert status["table/bronze_sql"]["health"] == "Healthy" and status["model/churn"]["sync"] == "Synced"

        # +30 rows in the database: gold follows, the model's policy (≥ 50) keeps the release.
        _insert(db, range(301, 331))
        done = _specd(home, "sync", "table/bronze_sql", "--repo", str(spec_repo.path))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "kept release" in done.stdout and "data ahead by 30 rows" in done.stdout
        status = {f"{r['kind']}/{r['name']}": r for r in daemon.status()["resources"]}
        assert status["model/churn"]["sync"] == "OutOfSync" and "data ahead by 30 rows" in status["model/churn"]["message"]
        assert status["table/gold"]["sync"] == "Synced"
        plan = _specd(home, "plan", "--repo", str(spec_repo.path), "--json")
        assert plan.returncode == 0, plan.stderr
        assert not [a for a in json.loads(plan.stdout)["actions"] if a["op"] != "unchanged"]  # lagging by policy

        # +70 rows from the API: gold has +100 rows since the model's data: the policy fires and it retrains.
        IncrementalApi.records += [_row(i) for i in range(1101, 1171)]
        done = _specd(home, "sync", "table/bronze_http", "--repo", str(spec_repo.path))
        assert done.returncode == 0, done.stdout + done.stderr
        release_file = home / "bentoml" / "specd-releases" / "churn" / f"{first_release}.json"
        lineage = json.loads(release_file.read_text())["data"]
        assert lineage["rows"] == 500 and lineage["delta_version"] == _version(home, "gold")
        assert "+200 rows" in lineage["trigger"]["reason"] or "+100 rows" in lineage["trigger"]["reason"]
        status = {f"{r['kind']}/{r['name']}": r for r in daemon.status()["resources"]}
        assert status["model/churn"]["sync"] == "Synced"

        # A description-only commit: a metadata update of bronze_sql, nothing rebuilt or trained.
        versions = {n: _version(home, n) for n in ("bronze_sql", "bronze_http", "gold")}
        trained_at = lineage["trained_at"]
        spec_repo.write("specs/tables/bronze_sql.yaml", BRONZE_SQL.format(description="rows, straight from the database"))
        sha = spec_repo.commit("describe bronze_sql")
        daemon.wait_converged(sha, timeout=120)
        assert {n: _version(home, n) for n in ("bronze_http", "gold")} == {k: versions[k] for k in ("bronze_http", "gold")}
        assert _version(home, "bronze_sql") == versions["bronze_sql"] + 1
        assert DeltaTable(str(home / "lake" / "tables" / "bronze_sql")).metadata().description == "rows, straight from the database"
        assert json.loads(release_file.read_text())["data"]["trained_at"] == trained_at

        journal = daemon.journal()
        plans = _plans_match_results(journal, mark)
        assert len(plans) >= 4
        metadata_plan = plans[-1]["plan"]
        assert [(p["resource"], p["reason"]) for p in metadata_plan] == [("table/bronze_sql", "metadata update: description")]
        assert any(e["type"] == "SyncFinished" for e in journal[mark:])
        assert "in sync at" in daemon.log_text()
        history = _specd(home, "history", "model/churn")
        assert "retrain: gold v" in history.stdout and "trained on gold v" in history.stdout
