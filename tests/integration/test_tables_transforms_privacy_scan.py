"""No plaintext of a protected column reaches a Delta file: build a table through the real pipeline
(embedded SQLite source → clean → quality with quarantine → privacy in every mode → Delta table and
quarantine table), then scan every written byte, every decoded Parquet value, the Parquet statistics
and the Delta log for the plaintext of every protected value. A positive control (an unprotected
column) proves the scanner finds what is there."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.tables import table_uri
from flows.tables.build import BuildJob, run_build
from flows.tables.privacy import decrypt_column

pytestmark = pytest.mark.integration
HASH_KEY, ENC_KEY = "hash-key-for-tests", "encryption-key-for-tests"


def customers() -> list[tuple]:
    rows = []
    for i in range(1, 41):
        email = f"person.{i:03d}.private@example.org" if i % 9 else f"broken-address-{i:03d}"  # some fail the regex
        age = str(20 + i) if i % 13 else "unknown"  # some fail the cast → quarantine
        rows.append(
            (
                i,
                email,
                f"+49 151 {7000000 + i:08d}",
                f"Secret Name {i:03d}",
                f"SSN-{i:03d}-{i * 7:04d}",
                f"ZIP-{10000 + i * 37}",
                date(1950 + i, 1 + i % 12, 1 + i % 27).isoformat(),
                age,
                f"Springfield-unique-{i:03d}",
            )
        )
    rows.append(rows[4])  # an exact duplicate for the dedupe step
    return rows


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PII_HASH_KEY", HASH_KEY)
        patch.setenv("PII_ENC_KEY", ENC_KEY)
        yield _build(tmp_path_factory.mktemp("privacy"))


def _build(tmp_path: Path) -> dict:
    data = tmp_path / "repo" / "data"
    data.mkdir(parents=True)
    rows = customers()
    with sqlite3.connect(data / "crm.db") as connection:
        connection.execute(
            "CREATE TABLE customers (id INTEGER, email TEXT, phone TEXT, name TEXT, ssn TEXT, zip TEXT, born TEXT, age TEXT, city TEXT)"
        )
        connection.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    spec = {
        "layer": "silver",
        "source": {"type": "sql", "url": "sqlite:///data/crm.db", "query": "SELECT * FROM customers"},
        "clean": {
            "dedupe": {"keys": ["id"]},
            "columns": {"age": {"cast": "int64", "on_cast_error": "quarantine"}, "born": {"cast": "date"}},
        },
        "quality": {"action": "quarantine", "columns": {"email": {"regex": "^[^@]+@[^@]+$"}}},
        "privacy": {
            "columns": {
                "email": {"mode": "hash", "key": "${secret:PII_HASH_KEY}"},
                "phone": {"mode": "mask", "keep_last": 2},
                "name": {"mode": "encrypt", "key": "${secret:PII_ENC_KEY}"},
                "ssn": "drop",
                "zip": {"mode": "generalize", "prefix": 5},
                "born": {"mode": "generalize", "truncate": "year"},
                "age": {"mode": "generalize", "bucket": 10},
            }
        },
    }
    spec = _markers(spec)
    storage, state = tmp_path / "lake", tmp_path / "state"
    job = BuildJob(
        name="silver_customers",
        spec=spec,
        fingerprint="f" * 16,
        git_sha="0" * 40,
        storage_root=str(storage),
        data_root=str(tmp_path / "repo"),
        repo_dir=str(tmp_path / "repo"),
        state_dir=str(state),
    )
    report = run_build(job)
    return {"report": report, "rows": rows, "storage": storage, "state": state}


def _markers(value):
    """Specs reach the build with `${secret:NAME}` already turned into the marker `secret:NAME`."""
    if isinstance(value, dict):
        return {k: _markers(v) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("${secret:"):
        return "secret:" + value[len("${secret:") : -1]
    return value


def _decoded_text(path: Path) -> str:
    """Every value and every statistic of a Parquet file, as text."""
    parquet = pq.ParquetFile(path)
    # str() of each value: dates and timestamps as ISO text, binaries as their bytes' repr
    parts = [str(value) for row in parquet.read().to_pylist() for value in row.values()]
    metadata = parquet.metadata
    for group in range(metadata.num_row_groups):
        for column in range(metadata.num_columns):
            stats = metadata.row_group(group).column(column).statistics
            if stats is not None and stats.has_min_max:
                parts.append(f"{stats.min} {stats.max}")
    return "\n".join(parts)


def test_no_plaintext_of_any_protected_value_in_any_written_file(built) -> None:
    report, rows = built["report"], built["rows"]
    assert report.committed
    assert report.rows["quarantined"] >= 6 and report.rows["deduplicated"] == 1
    files = [p for root in (built["storage"], built["state"]) for p in root.rglob("*") if p.is_file()]
    parquet_files = [p for p in files if p.suffix == ".parquet"]
    assert any("__quarantine" in str(p) for p in parquet_files), "the quarantine table was written"
    assert any("_delta_log" in str(p) for p in files)

    raw = b"\n".join(p.read_bytes() for p in files)
    decoded = "\n".join(_decoded_text(p) for p in parquet_files)
    protected_values = set()
    for _id, email, phone, name, ssn, zip_code, born, _age, _city in rows:
        protected_values |= {email, phone, name, ssn, zip_code, born}
    leaks = sorted(v for v in protected_values if v.encode() in raw or v in decoded)
    assert leaks == []

    # positive controls: an unprotected column, and a date column's ISO text, are found by the same scan
    assert all(row[-1] in decoded for row in rows)
    assert "1951-01-01" in decoded  # `born` of customer 1, generalised to its year


def test_protected_columns_hold_their_protected_forms(built) -> None:
    from deltalake import DeltaTable

    root = str(built["storage"])
    table = DeltaTable(table_uri(root, "silver_customers")).to_pyarrow_table()
    quarantine = DeltaTable(table_uri(root, "silver_customers__quarantine")).to_pyarrow_table()
    assert "ssn" not in table.column_names and "ssn" not in quarantine.column_names
    assert set(table.column("age").drop_null().to_pylist()) <= {20, 30, 40, 50, 60}
    assert all(len(v) == 64 for v in table.column("email").to_pylist())
    assert all(v.startswith("ZIP-1") and len(v) == 5 for v in table.column("zip").to_pylist())
    assert {d.month for d in table.column("born").to_pylist()} == {1}
    names = decrypt_column(table.column("name"), ENC_KEY.encode(), "name").to_pylist()
    assert sorted(names)[:2] == ["Secret Name 001", "Secret Name 002"]
    reasons = set(quarantine.column("_specd_quarantine_reason").to_pylist())
    assert reasons >= {"email.regex", "age.cast"}
    assert table.num_rows + quarantine.num_rows == 40  # 41 read, one duplicate
