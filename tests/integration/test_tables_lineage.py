"""Lineage that has to hold across builds and restores, on real Delta through the real adapter:

- restoring a table to an earlier version brings its quarantine table back to the matching version
  (recorded in the table's commit metadata at build time), including "there was no quarantine then";
- rows deduplicated in the stream are counted exactly (read = written + quarantined + deduplicated +
  filtered, each checked against an independent count);
- a derived feature computed from a protected column is a spec error at validation time, with the
  file:line of the field.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from deltalake import DeltaTable

if TYPE_CHECKING:
    from tests.helpers.tables import TableWorld

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

ORDERS = "id,customer,amount\n" + "".join(f"{i},c{i % 3},{i}.5\n" for i in range(1, 21))
CHECKED = """
source: {{type: file, path: data/orders.csv, format: csv}}
quality: {{action: quarantine, columns: {{amount: {{max: {limit}}}}}}}
"""
UNCHECKED = "source: {type: file, path: data/orders.csv, format: csv}\n"


def quarantined_ids(world: TableWorld) -> list[int]:
    return sorted(DeltaTable(world.uri("orders__quarantine")).to_pyarrow_table().column("id").to_pylist())


def revert(world: TableWorld, spec: str, version: int) -> str:
    world.write("specs/tables/orders.yaml", spec)
    plan, _, _ = world.plan()
    assert [(a.name, str(a.op), a.restore_from) for a in plan.changes] == [("orders", "restore", str(version))], plan.to_text()
    ((_, _, message),) = world.converge()
    return message


def test_restore_brings_the_quarantine_back_to_the_matching_version(world: TableWorld) -> None:
    world.write("data/orders.csv", ORDERS)
    world.write("specs/tables/orders.yaml", UNCHECKED)  # v0: no quality, no quarantine table yet
    world.converge()
    world.write("specs/tables/orders.yaml", CHECKED.format(limit=15))  # v1: quarantines 15.5 .. 20.5
    world.converge()
    assert quarantined_ids(world) == [15, 16, 17, 18, 19, 20]
    meta = DeltaTable(world.uri("orders")).history(1)[0]
    assert (meta["specd.quarantine_batch"], meta["specd.quarantine_version"]) == ("2", "0")
    world.write("specs/tables/orders.yaml", CHECKED.format(limit=5))  # v2: quarantines 5.5 .. 20.5
    world.converge()
    assert quarantined_ids(world) == list(range(5, 21))

    message = revert(world, CHECKED.format(limit=15), 1)
    assert "quarantine restored to its version 0" in message
    assert quarantined_ids(world) == [15, 16, 17, 18, 19, 20]
    assert sorted(DeltaTable(world.uri("orders")).to_pyarrow_table().column("id").to_pylist()) == list(range(1, 15))
    assert not world.plan()[0].has_changes

    message = revert(world, UNCHECKED, 0)  # back before any quarantine: nothing was quarantined then
    assert "quarantine emptied" in message
    assert quarantined_ids(world) == []
    assert DeltaTable(world.uri("orders")).to_pyarrow_table().num_rows == 20

    message = revert(world, CHECKED.format(limit=5), 2)
    assert "quarantine restored" in message and quarantined_ids(world) == list(range(5, 21))


def test_restore_goes_by_build_number_when_the_recorded_version_is_not_that_builds(world: TableWorld) -> None:
    from flows.tables.maintenance import compact
    from flows.tables.quarantine import restore_matching

    world.write("data/orders.csv", ORDERS)
    world.write("specs/tables/orders.yaml", CHECKED.format(limit=15))
    world.converge()  # build 1: quarantine v0
    world.write("specs/tables/orders.yaml", CHECKED.format(limit=5))
    world.converge()  # build 2: quarantine v1
    compact(world.uri("orders__quarantine"))  # v2: same rows as build 2
    assert restore_matching(str(world.home / "lake"), "orders", {"specd.quarantine_batch": "2", "specd.quarantine_version": "1"}, "x") == ""
    # a version number taken by another commit (a maintenance commit won the race): build 1's commit is found by number
    note = restore_matching(str(world.home / "lake"), "orders", {"specd.quarantine_batch": "1", "specd.quarantine_version": "2"}, "x")
    assert note == "; quarantine restored to its version 0" and quarantined_ids(world) == [15, 16, 17, 18, 19, 20]
    assert DeltaTable(world.uri("orders__quarantine")).history(1)[0]["specd.operation"] == "restore"


def test_in_stream_dedupe_accounting_matches_an_independent_count(world: TableWorld) -> None:
    rows = ["id,version,amount,note"]
    for i in range(300):  # ids repeat (3 versions each, some with no version), a filter drops amount < 0
        version = "" if i % 7 == 0 else str(i % 5)
        rows.append(f"{i % 100},{version},{-1 if i % 11 == 0 else i},n{i}")
    world.write("data/events.csv", "\n".join(rows) + "\n")
    world.write("specs/tables/events.yaml", """
    source: {type: file, path: data/events.csv, format: csv}
    clean:
      where: amount >= 0
      dedupe: {keys: [id], keep_latest_by: version}
    features:
      columns: {double_amount: amount * 2}
      select: [id, version, double_amount]
    quality: {action: quarantine, columns: {double_amount: {max: 500}}}
    """)
    world.converge()
    kept = [line.split(",") for line in rows[1:] if int(line.split(",")[2]) >= 0]
    groups = {row[0] for row in kept}
    meta = DeltaTable(world.uri("events")).history(1)[0]
    counts = {k: int(meta[f"specd.rows_{k}"]) for k in ("read", "written", "quarantined", "deduplicated", "filtered")}
    assert counts["read"] == 300 and counts["filtered"] == 300 - len(kept)
    assert counts["deduplicated"] == len(kept) - len(groups)
    assert counts["written"] + counts["quarantined"] == len(groups)
    written = DeltaTable(world.uri("events")).to_pyarrow_table()
    assert written.column_names == ["id", "version", "double_amount"]  # bookkeeping columns never land


def test_a_feature_derived_from_a_protected_column_is_a_validation_error(world: TableWorld) -> None:
    world.write("specs/tables/users.yaml", """
    source: {type: file, path: data/users.csv, format: csv}
    features:
      columns:
        email_domain: split_part(email, '@', 2)
        domain_length: {expr: "length(split_part(email, '@', 2))", allow_pii_derivation: true}
        email: lower(email)
    privacy:
      columns:
        email: {mode: hash, key: "secret:EMAIL_KEY"}
    """)
    world.write("specs/tables/contacts.yaml", """
    source:
      type: table
      inputs: [users]
      sql: |
        SELECT id,
               email AS contact
        FROM users
    privacy:
      columns: {email: drop}
    """)
    result = subprocess.run([sys.executable, "-m", "daemon.cli", "validate", "--repo", str(world.repo), "--home", str(world.home)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode != 0, result.stdout
    out = result.stdout + result.stderr
    assert "specs/tables/users.yaml:4: features.columns.email_domain: column 'email_domain' is derived from the protected column(s) email" in out, out
    assert "specs/tables/contacts.yaml:4: source.sql: column 'contact' renames protected email (line 2 of the query" in out, out
    assert "domain_length" not in out and "features.columns.email:" not in out
