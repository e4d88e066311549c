"""Right to erasure, end to end without the daemon: real Delta tables built by the table adapter (bronze
with the e-mail encrypted, silver with it hashed, a gold aggregate downstream) and a prediction/feedback
log written the way the service writes it; `specd erase` removes one subject everywhere, and a byte scan
of the table directories after the vacuum finds none of its forms (plaintext, HMAC hex, ciphertexts)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from bentos.prediction_log import FEEDBACK_COLUMNS, PREDICTION_COLUMNS, arrow_schema
from bentos.routing import Routing, Variant, write_routing
from daemon.adapters.services.supervisor import Supervisor
from daemon.adapters.tables import workers
from daemon.cli.main import main
from daemon.runtime.lock import acquire_for_apply
from flows.tables.erase import ERASURE
from flows.tables.privacy import decrypt_column
from flows.training.registry import Release, write_release
from tests.helpers.tables import TableWorld

pytestmark = pytest.mark.integration
HASH_KEY, ENC_KEY = "erasure-hash-key-for-tests", "erasure-encryption-key-for-tests"
SUBJECT = "ann.subject.private@example.org"
OTHERS = [f"person.{i:03d}@example.org" for i in range(30)]


def _specs(world: TableWorld) -> None:
    emails = [SUBJECT, *OTHERS, SUBJECT]  # the subject ordered twice
    world.write("data/orders.csv", "order_id,customer_email,amount\n"
                + "".join(f"{i},{e},{10 + i}.5\n" for i, e in enumerate(emails)))
    world.write("data/crm.csv", "contact_id,customer_email,segment\n"
                + "".join(f"{i},{e},{'a' if i % 2 else 'b'}\n" for i, e in enumerate([SUBJECT, *OTHERS])))
    world.write("specs/tables/bronze_orders.yaml", """
        layer: bronze
        source: {type: file, path: data/orders.csv, format: csv, options: {all_varchar: true}}
        privacy:
          columns:
            customer_email: {mode: encrypt, key: "${secret:PII_ENC_KEY}"}
        """)
    world.write("specs/tables/silver_contacts.yaml", """
        layer: silver
        source: {type: file, path: data/crm.csv, format: csv}
        privacy:
          columns:
            customer_email: {mode: hash, key: "${secret:PII_HASH_KEY}"}
        """)
    world.write("specs/tables/gold_segments.yaml", """
        layer: gold
        source: {type: table, inputs: [silver_contacts]}
        features:
          aggregate:
            by: [segment]
            aggregates: {contacts: count(*)}
        """)


def _write_log(uri: str) -> tuple[str, str]:
    now = datetime.now(UTC)
    rows, feedback = [], []
    for i, email in enumerate([SUBJECT, *OTHERS[:9]]):
        rid = f"req-{i:03d}"
        rows.append({"request_id": rid, "row": 0, "ts": now, "service": "shop", "variant": "champion", "model_tag": "m:a",
                     "routing_fingerprint": "fp", "sticky_key": None, "prediction": "1", "probability": 0.7,
                     "latency_ms": 1.0, "features": json.dumps({"customer_email": email, "amount": i})})
        feedback.append({"request_id": rid, "row": 0, "ts": now, "service": "shop", "variant": "champion", "label": "1"})
    predictions, feedback_uri = f"{uri}/predictions", f"{uri}/feedback"
    write_deltalake(predictions, pa.Table.from_pylist(rows, schema=arrow_schema(PREDICTION_COLUMNS)), mode="append")
    write_deltalake(feedback_uri, pa.Table.from_pylist(feedback, schema=arrow_schema(FEEDBACK_COLUMNS)), mode="append")
    return predictions, feedback_uri


@pytest.fixture
def erasure_world(world: TableWorld, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("PII_HASH_KEY", HASH_KEY)
    monkeypatch.setenv("PII_ENC_KEY", ENC_KEY)
    monkeypatch.setenv("SPECD_HOME", str(world.home))
    workers.shutdown()  # the warm build workers read secrets from the environment they were started with
    _specs(world)
    done = world.converge()
    assert {name for name, *_ in done} >= {"bronze_orders", "silver_contacts", "gold_segments"}, done
    predictions, feedback = _write_log(str(world.home / "logs" / "shop"))
    settings = {"prediction_log": {"predictions_uri": predictions, "feedback_uri": feedback}}
    write_routing(Supervisor(world.home).routing_file("shop"),  # how `specd ab` and erase find a service's logs
                  Routing("shop", "fp", "rev", "m", (Variant("champion", "m:a", 1.0),), None, None, settings))
    ciphertexts = [c for c, p in zip(*_bronze_emails(world), strict=True) if p == SUBJECT]
    assert len(ciphertexts) == 2
    forms = [SUBJECT.encode(), hmac.new(HASH_KEY.encode(), SUBJECT.encode(), hashlib.sha256).hexdigest().encode(),
             *ciphertexts]
    return {"world": world, "predictions": predictions, "feedback": feedback, "forms": forms}


def _bronze_emails(world: TableWorld) -> tuple[list, list]:
    column = DeltaTable(world.uri("bronze_orders")).to_pyarrow_table().column("customer_email")
    return column.to_pylist(), decrypt_column(column, ENC_KEY.encode(), "customer_email").to_pylist()


def _rows(uri: str) -> int:
    return DeltaTable(uri).to_pyarrow_table().num_rows


def _scan(directories: list[Path], forms: list[bytes]) -> list[str]:
    """Every file under the directories that contains any form of the subject, byte for byte."""
    hits = []
    for directory in directories:
        for path in directory.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                hits += [f"{path} holds form {i}" for i, form in enumerate(forms) if form in data]
    return hits


def _dirs(ctx: dict) -> list[Path]:
    world = ctx["world"]
    return [Path(world.uri(n)) for n in ("bronze_orders", "silver_contacts", "gold_segments")] + [
        Path(ctx["predictions"]), Path(ctx["feedback"])]


def _erase(world: TableWorld, *extra: str) -> int:
    return main(["-v", "erase", "--subject", f"customer_email={SUBJECT}", "--repo", str(world.repo), "--home", str(world.home), *extra])


def test_dry_run_changes_nothing_and_lists_every_table(erasure_world: dict, capsys: pytest.CaptureFixture) -> None:
    world = erasure_world["world"]
    assert _scan(_dirs(erasure_world), erasure_world["forms"])  # positive control: the scanner sees the subject
    versions = {n: DeltaTable(world.uri(n)).version() for n in ("bronze_orders", "silver_contacts")}
    assert _erase(world, "--dry-run") == 0
    out = capsys.readouterr()
    assert "delete 2 row(s) from bronze_orders" in out.out and "delete 1 row(s) from silver_contacts" in out.out
    assert "delete 1 row(s) from shop:predictions" in out.out and "delete 1 row(s) from shop:feedback" in out.out
    assert "gold_segments reads an erased table" in out.out and "dry run: nothing changed" in out.out
    assert SUBJECT not in out.out + out.err
    assert {n: DeltaTable(world.uri(n)).version() for n in versions} == versions
    assert _rows(world.uri("bronze_orders")) == 32 and _rows(erasure_world["predictions"]) == 10


def test_erase_is_refused_while_the_daemon_holds_the_lock(erasure_world: dict, capsys: pytest.CaptureFixture) -> None:
    world = erasure_world["world"]
    lock = acquire_for_apply(world.home)  # what the daemon holds for its whole life
    try:
        assert _erase(world, "--vacuum-now") == 1
    finally:
        lock.release()
    assert "specd erase refused" in capsys.readouterr().err
    assert _rows(world.uri("bronze_orders")) == 32 and DeltaTable(world.uri("bronze_orders")).version() == 0


def test_erase_removes_every_form_and_keeps_the_other_rows(erasure_world: dict, capsys: pytest.CaptureFixture) -> None:
    world = erasure_world["world"]
    write_release(Release("contact_model", "f" * 64, "contact_model:a-1", (), "promoted a", "rev",
                          data={"table": "silver_contacts", "uri": world.uri("silver_contacts"), "delta_version": 0}))
    assert _erase(world, "--vacuum-now") == 0
    out = capsys.readouterr()
    assert SUBJECT not in out.out + out.err
    assert "model trained on erased rows: contact_model release ffffffffffff" in out.out and "silver_contacts v0" in out.out
    assert "erased 2 row(s) from bronze_orders" in out.out and "erased 1 row(s) from shop:feedback" in out.out
    assert _rows(world.uri("bronze_orders")) == 30 and _rows(world.uri("silver_contacts")) == 30
    assert _rows(erasure_world["predictions"]) == 9 and _rows(erasure_world["feedback"]) == 9
    assert sorted(_bronze_emails(world)[1]) == sorted(OTHERS)
    assert _scan(_dirs(erasure_world), erasure_world["forms"]) == []
    for name in ("bronze_orders", "silver_contacts"):
        meta = DeltaTable(world.uri(name)).history(1)[0]
        record = json.loads(meta[ERASURE])
        assert record["column"] == "customer_email" and len(record["subject_sha256"]) == 64
        assert SUBJECT not in json.dumps(meta) and meta["specd.fingerprint"]  # the build's state is carried over
    plan, _, _ = world.plan()
    changed = {a.name for a in plan.changes}
    assert "bronze_orders" not in changed and "silver_contacts" not in changed  # not rebuilt from the source
    assert "gold_segments" in changed, plan.to_text()  # its input changed: it rebuilds without the subject
    assert _erase(world, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert all(step["rows"] == 0 for step in report["plan"]) and SUBJECT not in json.dumps(report)
