"""The erasure engine on small Delta tables: matching in clear, hashed, encrypted and in log features
JSON (non-ASCII values included), masked columns reported as unmatchable, nothing changed by a plan."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from flows.tables.erase import Target, apply_erasure, plan_erasure, request_record, subject_digest
from flows.tables.privacy import encrypt_array, hmac_sha256_hex

KEY = b"unit-erasure-key"
SUBJECT = "josé.núñez@example.org"


def test_every_form_is_matched_and_masked_columns_are_reported(tmp_path: Path) -> None:
    emails = pa.array([SUBJECT, "b@x.org", SUBJECT, "c@x.org"])
    ids = pa.array([1, 2, 3, 4], pa.int64())
    tables = {"clear": emails, "hash": hmac_sha256_hex(emails, KEY), "encrypt": encrypt_array(emails, KEY, "email"),
              "mask": pa.array(["jo***", "b@***", "jo***", "c@***"])}
    targets = []
    for mode, column in tables.items():
        write_deltalake(str(tmp_path / mode), pa.table({"id": ids, "email": column}))
        targets.append(Target(mode, str(tmp_path / mode), None if mode == "clear" else mode, KEY))
    feats = [json.dumps({"email": e}) for e in (SUBJECT, "b@x.org")]
    write_deltalake(str(tmp_path / "pred"), pa.table({"request_id": ["r1", "r2"], "row": pa.array([0, 0], pa.int64()), "features": feats}))
    logs = [(Target("pred", str(tmp_path / "pred"), kind="predictions"), None)]
    steps = {s.target: s for s in plan_erasure("email", SUBJECT, targets, logs)}
    assert {n: s.rows for n, s in steps.items()} == {"clear": 2, "hash": 2, "encrypt": 2, "mask": 0, "pred": 1}
    assert "cannot be recognised" in steps["mask"].note
    assert all(DeltaTable(str(tmp_path / n)).version() == 0 for n in steps)  # a plan only reads
    by_name = {t.name: t for t in targets} | {"pred": logs[0][0]}
    apply_erasure(list(steps.values()), by_name, request_record("email", SUBJECT, b"s", "test"), vacuum_now=False)
    for name in ("clear", "hash", "encrypt"):
        assert DeltaTable(str(tmp_path / name)).to_pyarrow_table().column("id").to_pylist() == [2, 4]
    assert DeltaTable(str(tmp_path / "pred")).to_pyarrow_table().column("request_id").to_pylist() == ["r2"]
    assert DeltaTable(str(tmp_path / "mask")).version() == 0


def test_the_request_record_holds_a_salted_hash_only() -> None:
    record = request_record("email", SUBJECT, b"salt-1", "test")
    assert SUBJECT not in json.dumps(record) and record["subject_sha256"] == subject_digest("email", SUBJECT, b"salt-1")
    assert subject_digest("email", SUBJECT, b"salt-2") != record["subject_sha256"]


def test_a_key_changed_in_place_is_reported_not_crashed_on(tmp_path: Path) -> None:
    write_deltalake(str(tmp_path / "t"), pa.table({"email": encrypt_array(pa.array([SUBJECT]), KEY, "email")}))
    [step] = plan_erasure("email", SUBJECT, [Target("t", str(tmp_path / "t"), "encrypt", b"another-key")])
    assert step.rows == 0 and "does not decrypt with the table's current key" in step.note
