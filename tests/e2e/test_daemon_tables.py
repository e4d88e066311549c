"""End to end: the real daemon on a real git repository, applying through a real Prefect server into
real Delta tables. Commit → converged; comment-only → nothing planned; revert → Delta restore without
recompute; a broken commit is rejected whole with file:line errors; kill -9 mid-apply → restart converges
without duplicated rows."""

from __future__ import annotations

import time

import pytest
from deltalake import DeltaTable

pytestmark = [pytest.mark.e2e]

ORDERS = "id,customer,amount\n" + "".join(f"{i},c{i % 7},{i * 1.5}\n" for i in range(1, 101))
BRONZE = """
layer: bronze
source:
  type: file
  path: data/orders.csv
  format: csv
"""
SILVER = """
layer: silver
source:
  type: table
  inputs: [bronze_orders]
  sql: SELECT id, customer, amount FROM bronze_orders WHERE amount > 10
write:
  mode: merge
  keys: [id]
"""


def table(home, name) -> DeltaTable:
    return DeltaTable(str(home / "lake" / "tables" / name))


def seed(repo):
    repo.write("data/orders.csv", ORDERS)
    repo.write("specs/tables/bronze_orders.yaml", BRONZE)
    repo.write("specs/tables/silver_orders.yaml", SILVER)
    return repo.commit("orders pipeline")


def test_commit_converges_and_comment_only_change_plans_nothing(spec_repo, home, daemon_factory):
    sha = seed(spec_repo)
    daemon = daemon_factory(spec_repo.path)
    status = daemon.wait_converged(sha)
    resources = {f"{r['kind']}/{r['name']}": r for r in status["resources"]}
    assert resources["table/bronze_orders"]["sync"] == "Synced" and resources["table/silver_orders"]["health"] == "Healthy"
    assert table(home, "bronze_orders").to_pyarrow_table().num_rows == 100
    silver = table(home, "silver_orders")
    assert silver.to_pyarrow_table().num_rows == 94
    assert silver.history(1)[0].get("specd.git_sha") == sha or sha in str(silver.history(1)[0])
    metrics = daemon.metrics()
    assert "specd_in_sync 1.0" in metrics
    assert f'specd_applied_revision_info{{revision="{sha}"}} 1.0' in metrics
    versions = {name: table(home, name).version() for name in ("bronze_orders", "silver_orders")}

    spec_repo.write("specs/tables/silver_orders.yaml", "# cleaned orders, reviewed by data eng\n" + SILVER.replace("  mode: merge", "  mode: merge   # idempotent"))
    comment_sha = spec_repo.commit("comment only")
    daemon.wait_converged(comment_sha, timeout=30)
    assert {name: table(home, name).version() for name in versions} == versions
    assert not [e for e in daemon.journal() if e["type"] == "ApplyStarted" and e["revision"] == comment_sha]


def test_revert_restores_the_earlier_delta_version_without_recompute(spec_repo, home, daemon_factory):
    seed(spec_repo)
    daemon = daemon_factory(spec_repo.path)
    first = spec_repo.head()
    daemon.wait_converged(first)
    original = table(home, "silver_orders").to_pyarrow_table().sort_by("id")

    spec_repo.write("specs/tables/silver_orders.yaml", SILVER.replace("amount > 10", "amount > 100"))
    changed = spec_repo.commit("only big orders")
    daemon.wait_converged(changed)
    assert table(home, "silver_orders").to_pyarrow_table().num_rows < original.num_rows

    spec_repo.git("revert", "--no-edit", "HEAD")
    reverted = spec_repo.head()
    started = time.monotonic()
    daemon.wait_converged(reverted)
    elapsed = time.monotonic() - started
    silver = table(home, "silver_orders")
    assert silver.history(1)[0]["operation"] == "RESTORE"
    assert silver.to_pyarrow_table().sort_by("id").equals(original)
    applied = [e for e in daemon.journal() if e["type"] == "ActionSucceeded" and e["revision"] == reverted and e["resource"].startswith("table/")]
    assert [(e["resource"], e["op"]) for e in applied] == [("table/silver_orders", "restore")], applied  # nothing rebuilt
    assert elapsed < 30


def test_broken_commit_is_rejected_whole_and_tables_stay(spec_repo, home, daemon_factory):
    good = seed(spec_repo)
    daemon = daemon_factory(spec_repo.path)
    daemon.wait_converged(good)
    versions = {name: table(home, name).version() for name in ("bronze_orders", "silver_orders")}

    spec_repo.write("specs/tables/bronze_orders.yaml", BRONZE + "partition_by: [customer\n")
    spec_repo.write("specs/tables/silver_orders.yaml", SILVER.replace("keys: [id]", "keys: [id]\nretention:\n  vacuum_hours: soon"))
    bad = spec_repo.commit("broken")
    status = daemon.wait_for(lambda s: (s.get("rejected") or {}).get("revision") == bad, 30, "rejection")
    errors = status["rejected"]["errors"]
    assert any(e.startswith("specs/tables/bronze_orders.yaml:6: YAML syntax error") for e in errors), errors
    assert any(e.startswith("specs/tables/silver_orders.yaml:10: retention.vacuum_hours:") for e in errors), errors
    assert status["revision"] == good
    assert "specd_rejected_commits_total 1.0" in daemon.metrics()
    assert {name: table(home, name).version() for name in versions} == versions

    spec_repo.write("specs/tables/bronze_orders.yaml", BRONZE)
    spec_repo.write("specs/tables/silver_orders.yaml", SILVER.replace("amount > 10", "amount > 20"))
    fixed = spec_repo.commit("fixed")
    status = daemon.wait_converged(fixed)
    assert status["rejected"] is None
    assert table(home, "silver_orders").to_pyarrow_table().num_rows == 87


def test_kill_9_during_apply_then_restart_converges_without_duplicates(spec_repo, home, daemon_factory):
    spec_repo.write(
        "specs/tables/big.yaml",
        """
        source:
          type: synthetic
          rows: 3000000
          seed: 7
          columns:
            - {name: id, kind: sequence}
            - {name: value, kind: normal}
        write:
          mode: merge
          keys: [id]
        """,
    )
    sha = spec_repo.commit("big table")
    daemon = daemon_factory(spec_repo.path)
    daemon.wait_for(lambda s: any(r["health"] == "Progressing" for r in s.get("resources", [])), 60, "apply to start")
    time.sleep(0.5)
    daemon.kill9()
    again = daemon_factory(spec_repo.path)
    again.wait_converged(sha, timeout=180)
    data = table(home, "big").to_pyarrow_table(columns=["id"])
    assert data.num_rows == 3_000_000
    assert len(data.column("id").unique()) == 3_000_000
