"""Privacy by default at build time (a sample of the values decides), and key ids in the commit metadata."""

from __future__ import annotations

import json

import pytest
from deltalake import DeltaTable

from daemon.adapters.tables import workers
from tests.helpers.tables import TableWorld

pytestmark = pytest.mark.integration


def _contacts(world: TableWorld, privacy: str = "") -> None:
    rows = "".join(f"{i},person.{i}@example.org,4111 1111 1111 1111,note {i}\n" for i in range(20))
    world.write("data/c.csv", "id,contact,reference,remark\n" + rows)
    world.write("specs/tables/contacts.yaml", "layer: bronze\nsource: {type: file, path: data/c.csv, format: csv}\n" + privacy)


def test_undeclared_personal_values_are_a_build_warning(world: TableWorld) -> None:
    _contacts(world)
    done = world.converge()
    assert "privacy warning" in done[0][2] and "contact (e-mail)" in done[0][2] and "reference (card number)" in done[0][2], done
    meta = DeltaTable(world.uri("contacts")).history(1)[0]
    assert json.loads(meta["specd.privacy_warnings"]) == ["contact (e-mail)", "reference (card number)"]


def test_require_declared_refuses_the_build(world: TableWorld) -> None:
    _contacts(world)
    env = world.repo / "environments" / "dev.yaml"
    env.write_text(env.read_text() + "privacy:\n  require_declared: true\n")
    with pytest.raises(Exception, match="look like personal data and have no privacy declaration"):
        world.converge()
    assert not (world.home / "lake" / "tables" / "contacts" / "_delta_log").exists()


def test_key_ids_are_recorded_and_a_new_key_reference_rebuilds(world: TableWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PII_KEY_A", "first-key-for-tests-0001")
    monkeypatch.setenv("PII_KEY_B", "second-key-for-tests-0002")
    workers.shutdown()  # the warm build workers read secrets from the environment they were started with
    _contacts(world, "privacy:\n  columns:\n    contact: {mode: hash, key: \"${secret:PII_KEY_A}\"}\n"
                     "    reference: {mode: encrypt, key: \"${secret:PII_KEY_A}\"}\n")
    world.converge()
    meta = DeltaTable(world.uri("contacts")).history(1)[0]
    ids = json.loads(meta["specd.privacy_keys"])
    assert set(ids) == {"contact", "reference"} and ids["contact"].startswith("PII_KEY_A:") and len(ids["contact"]) == 22
    assert "first-key-for-tests" not in json.dumps(meta) and "specd.privacy_warnings" not in meta
    plan, _, _ = world.plan()
    assert not plan.has_changes
    _contacts(world, "privacy:\n  columns:\n    contact: {mode: hash, key: \"${secret:PII_KEY_B}\"}\n"
                     "    reference: {mode: encrypt, key: \"${secret:PII_KEY_B}\"}\n")
    plan, _, _ = world.plan()
    assert [(a.name, str(a.op)) for a in plan.changes] == [("contacts", "update")], plan.to_text()
    world.converge()
    rotated = json.loads(DeltaTable(world.uri("contacts")).history(1)[0]["specd.privacy_keys"])
    assert rotated["contact"].startswith("PII_KEY_B:") and rotated["contact"].split(":")[1] != ids["contact"].split(":")[1]
