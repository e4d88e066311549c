"""Delta on object storage: the example tables built, planned, changed and restored on `s3://`, through
`specd apply`, against moto_server on 127.0.0.1 (the only S3 endpoint that installs here; it honours the
conditional writes delta-rs commits with — production uses a real S3-compatible store).

Also: 8 concurrent appends through specd's commit path land as 8 commits with no row lost; validate
refuses an unsafe commit mode unless the environment declares a single writer; the credentials (secret
references) never reach a plan, an output line or a file under the state home.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from tests.conftest import ROOT, free_port
from tests.helpers.s3 import SECRET_KEY

pytestmark = [pytest.mark.integration]

TABLES = sorted(p.stem for p in (ROOT / "specs" / "tables").glob("*.yaml"))


def storage_overlay(root: str, options: dict[str, str], extra: str = "") -> str:
    lines = ["storage:", f"  root: {root}", "  storage_options:"]
    lines += [f"    {k}: \"{v}\"" if not v.startswith("${") else f"    {k}: {v}" for k, v in options.items()]
    return "\n".join(lines) + "\n" + extra


def use_s3(repo, server, root: str, extra: str = "") -> None:
    dev = (repo.path / "environments" / "dev.yaml").read_text()
    (repo.path / "environments" / "dev.yaml").write_text(dev + storage_overlay(root, server.spec_options(), extra))


ONLINE_PORT = free_port()  # the embedded online store's, the same for every call (its keys are its state)


def specd(*args: str, repo, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPECD_ONLINE_PORT": str(ONLINE_PORT)}
    cmd = [sys.executable, "-m", "daemon.cli", *args, "--repo", str(repo), "--home", str(home), "--env", "dev"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def s3_table(server, root: str, name: str) -> DeltaTable:
    return DeltaTable(f"{root}/tables/{name}", storage_options=server.options())


@pytest.fixture
def stops_online_store(home):
    """`specd apply` leaves the embedded online store running for the next apply: stop it by its pid file."""
    yield
    from daemon.adapters.online import embedded

    embedded.stop(home)


def test_example_tables_build_plan_and_restore_on_s3(spec_repo, home, s3_server, s3_bucket, stops_online_store):
    for part in ("tables", "presets", "data"):
        shutil.copytree(ROOT / "specs" / part, spec_repo.path / "specs" / part)
    spec_repo.write("data/contacts.csv", "contact_id,customer_email\n1,ann@example.com\n2,bob@example.com\n3,ann@example.com\n")
    spec_repo.write("specs/tables/contacts.yaml", "source: {type: file, path: data/contacts.csv, format: csv}\n")
    root = f"s3://{s3_bucket}/team/lake"
    use_s3(spec_repo, s3_server, root)
    spec_repo.commit("example tables on s3")

    applied = specd("apply", "--no-prefect", repo=spec_repo.path, home=home)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    for name in TABLES:
        table = s3_table(s3_server, root, name)
        assert table.version() == 0 and table.to_pyarrow_table().num_rows > 0, name
    assert s3_table(s3_server, root, "silver_orders__quarantine").to_pyarrow_table().num_rows > 0
    assert not (home / "lake").exists()  # nothing went to local disk instead

    plan = specd("plan", "--detailed-exitcode", repo=spec_repo.path, home=home)
    assert plan.returncode == 0 and "No changes" in plan.stdout, plan.stdout + plan.stderr
    original = s3_table(s3_server, root, "silver_orders").to_pyarrow_table().sort_by("order_id")

    silver = spec_repo.path / "specs" / "tables" / "silver_orders.yaml"
    silver.write_text(silver.read_text().replace("keep_first: 2", "keep_first: 3"))
    spec_repo.commit("mask less")
    changed = specd("apply", "--no-prefect", repo=spec_repo.path, home=home)
    assert changed.returncode == 0, changed.stderr
    assert s3_table(s3_server, root, "silver_orders").version() == 1

    spec_repo.git("revert", "--no-edit", "HEAD")
    reverted = specd("apply", "--no-prefect", repo=spec_repo.path, home=home)
    assert reverted.returncode == 0, reverted.stderr
    assert "restored version 0" in reverted.stderr and "no recompute" in reverted.stderr, reverted.stderr
    restored = s3_table(s3_server, root, "silver_orders")
    assert restored.version() == 2 and restored.to_pyarrow_table().sort_by("order_id").equals(original)

    # right to erasure on S3: the subject's rows leave the table that holds them in clear, vacuumed now
    erased = specd("erase", "--subject", "customer_email=ann@example.com", "--vacuum-now", repo=spec_repo.path, home=home)
    assert erased.returncode == 0, erased.stdout + erased.stderr
    after = s3_table(s3_server, root, "contacts")
    assert after.to_pyarrow_table().column("customer_email").to_pylist() == ["bob@example.com"]
    assert len(after.history()) >= 2 and s3_table(s3_server, root, "bronze_orders").version() == 0  # masked there: no match

    for done in (applied, plan, changed, reverted, erased):
        assert SECRET_KEY not in done.stdout + done.stderr
    for path in home.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert SECRET_KEY.encode() not in path.read_bytes(), path
    from daemon.shared import storage_uri

    logs = [p for p in storage_uri.list_files(f"s3://{s3_bucket}", s3_server.options(), recursive=True) if p.endswith(".json")]
    assert len(logs) > len(TABLES)  # every commit's metadata (fingerprints, lineage, the applied spec) carries no secret
    for name in logs:
        assert SECRET_KEY.encode() not in storage_uri.read_bytes(f"s3://{s3_bucket}/{name}", s3_server.options()), name


def test_eight_concurrent_appends_are_eight_commits_without_lost_rows(s3_server, s3_bucket):
    from flows.tables.write import StagedFiles, WriteRequest, commit_staged

    uri = f"s3://{s3_bucket}/lake/tables/events"
    schema = pa.schema([("writer", pa.int64()), ("n", pa.int64())])

    def append(writer: int, rows: int, mode: str = "append") -> None:
        request = WriteRequest(uri, "events", mode, schema, storage_options=s3_server.options())
        staged = StagedFiles(request)
        staged.write(iter([pa.record_batch([pa.array([writer] * rows), pa.array(range(rows))], schema=schema)]))
        commit_staged(request, staged, {"specd.writer": str(writer)})

    append(0, 1, "overwrite")  # the table exists first: the 8 writers race on appends only
    errors: list[BaseException] = []

    def run(writer: int) -> None:
        try:
            append(writer, 100 + writer)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    table = DeltaTable(uri, storage_options=s3_server.options())
    assert table.version() == 8
    writers = sorted(int(h["specd.writer"]) for h in table.history() if "specd.writer" in h)
    assert writers == list(range(0, 9))
    data = table.to_pyarrow_table()
    assert data.num_rows == 1 + sum(100 + w for w in range(1, 9))
    grouped = data.group_by("writer").aggregate([("n", "count")])
    counts = dict(zip(grouped.column("writer").to_pylist(), grouped.column("n_count").to_pylist(), strict=True))
    assert counts == {0: 1, **{w: 100 + w for w in range(1, 9)}}


def test_validate_refuses_an_unsafe_commit_mode_naming_file_and_line(spec_repo, home, s3_server):
    """The whole matrix (conditional put disabled, a locking provider, single_writer) is in
    tests/unit/test_storage_uri.py; here the CLI's `path:line: field: message`."""
    spec_repo.write("specs/tables/x.yaml", "source: {type: file, path: data/x.csv, format: csv}\n")
    spec_repo.write("data/x.csv", "a\n1\n")
    options = {**s3_server.spec_options(), "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    dev = spec_repo.path / "environments" / "dev.yaml"
    dev.write_text(dev.read_text() + storage_overlay("s3://bucket/lake", options))
    spec_repo.commit("s3 env")
    done = specd("validate", repo=spec_repo.path, home=home)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "environments/dev.yaml:" in out and "storage" in out and "AWS_S3_ALLOW_UNSAFE_RENAME" in out and "single_writer" in out, out


def test_validate_refuses_a_literal_secret_key(spec_repo, home, s3_server):
    spec_repo.write("specs/tables/x.yaml", "source: {type: file, path: data/x.csv, format: csv}\n")
    options = {**s3_server.spec_options(), "AWS_SECRET_ACCESS_KEY": "plainvalue"}
    dev = spec_repo.path / "environments" / "dev.yaml"
    dev.write_text(dev.read_text() + storage_overlay("s3://bucket/lake", options))
    spec_repo.commit("literal key")
    done = specd("validate", repo=spec_repo.path, home=home)
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "environments/dev.yaml:" in out and "AWS_SECRET_ACCESS_KEY" in out, out
    assert "plainvalue" not in out
