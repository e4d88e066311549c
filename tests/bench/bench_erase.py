"""Erasure cost: erase one subject from an N-row Delta table vs a plain `DeltaTable.delete` of the same rows.

Three tables per run, built identically (N rows, the subject in 3 of them): the subject's column kept
in clear, hashed (HMAC-SHA256) and encrypted (AES-GCM). The baseline deletes the same rows with
`DeltaTable.delete(predicate)` on a fresh copy (clear column; for the encrypted table the predicate on
the row ids the erasure found). `flows.tables.erase` plans (matching; for encrypted columns every value
is decrypted) and rewrites the table without the rows, then vacuums at once. min/median/max over
--runs runs; the ratio is erase/plain (wall time).

    .venv/bin/python tests/bench/bench_erase.py --rows 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
from deltalake import DeltaTable, write_deltalake  # noqa: E402

from flows.tables.erase import Target, apply_erasure, plan_erasure, request_record  # noqa: E402
from flows.tables.privacy import encrypt_array, hmac_sha256_hex  # noqa: E402

KEY = b"bench-erasure-key"
SUBJECT = "subject.private@example.org"


def _data(rows: int) -> pa.Table:
    emails = [f"person.{i}@example.org" for i in range(rows)]
    for i in (0, rows // 2, rows - 1):
        emails[i] = SUBJECT
    return pa.table({"id": pa.array(range(rows), pa.int64()), "customer_email": pa.array(emails),
                     "amount": pa.array([float(i % 1000) for i in range(rows)])})


def _build(base: Path, data: pa.Table) -> dict[str, str]:
    column = data.column("customer_email")
    variants = {"clear": column, "hash": hmac_sha256_hex(column.combine_chunks(), KEY),
                "encrypt": encrypt_array(column.combine_chunks(), KEY, "customer_email")}
    uris = {}
    for mode, values in variants.items():
        uri = str(base / mode)
        write_deltalake(uri, data.set_column(1, "customer_email", values))
        uris[mode] = uri
    return uris


def _stats(values: list[float]) -> str:
    return f"min {min(values):.3f} s / median {statistics.median(values):.3f} s / max {max(values):.3f} s"


def run(rows: int, runs: int) -> dict[str, tuple[list[float], list[float], int]]:
    data = _data(rows)
    results: dict[str, tuple[list[float], list[float], int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-erase-") as tmp:
        pristine = _build(Path(tmp) / "pristine", data)
        for mode, source in pristine.items():
            erase_times, plain_times, removed = [], [], 0
            for i in range(runs):
                ours, plain = f"{tmp}/{mode}-ours-{i}", f"{tmp}/{mode}-plain-{i}"
                shutil.copytree(source, ours)
                shutil.copytree(source, plain)
                target = Target(mode, ours, None if mode == "clear" else mode, KEY if mode != "clear" else None)
                start = time.perf_counter()
                steps = plan_erasure("customer_email", SUBJECT, [target])
                apply_erasure(steps, {mode: target}, request_record("customer_email", SUBJECT, b"salt", "bench"), vacuum_now=True)
                erase_times.append(time.perf_counter() - start)
                removed = steps[0].rows
                predicate = f"id IN ({', '.join(str(j) for j in (0, rows // 2, rows - 1))})"
                start = time.perf_counter()
                table = DeltaTable(plain)
                table.delete(predicate)
                table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
                plain_times.append(time.perf_counter() - start)
                assert DeltaTable(ours).to_pyarrow_table().num_rows == rows - 3 == DeltaTable(plain).to_pyarrow_table().num_rows
                shutil.rmtree(ours)
                shutil.rmtree(plain)
            results[mode] = (erase_times, plain_times, removed)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"erase one subject (3 rows) from a {args.rows:,}-row Delta table, {args.runs} runs")
    for mode, (ours, plain, removed) in run(args.rows, args.runs).items():
        print(f"{mode}: erase {_stats(ours)}; plain delete {_stats(plain)}; rows removed {removed}")
        print(f"ratio {mode} erase/plain delete (median wall time): {statistics.median(ours) / statistics.median(plain):.2f}")


if __name__ == "__main__":
    main()
