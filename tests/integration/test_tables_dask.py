"""`engine: dask`: a table built partition by partition on a real LocalCluster (2 worker processes on
127.0.0.1) equals the same table built by the DuckDB engine, commits the same lineage, is exactly-once,
and a spec feature the Dask engine cannot run is a validation error on the `engine:` line."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from daemon.core.compose import compose
from daemon.shared.errors import SpecErrors
from flows.tables import DATA_DIGEST, ROWS_PREFIX
from tests.helpers.tables import world  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(240)

BODY = """
source: {{type: file, path: "data/events/*.{fmt}", format: {fmt}}}
engine: {engine}
clean:
  where: "amount >= 0"
  columns:
    city: {{normalize: {{trim: true, case: lower}}}}
    score: {{cast: float64, nulls: {{strategy: constant, value: 0}}}}
features:
  columns:
    amount_x2: "amount * 2"
  drop: [note]
quality:
  action: quarantine
  columns:
    city: {{allowed: [berlin, paris, rome]}}
  rules:
    small: "amount < 950"
privacy:
  columns:
    email: {{mode: hash, key: "secret:DASK_TEST_HASH_KEY"}}
    phone: {{mode: mask, keep_last: 2}}
"""


def _events(n: int, start: int) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "amount": pa.array([(i * 37) % 1000 - 20 for i in ids], pa.int64()),  # some negative: filtered
        "city": [[" Berlin", "paris ", "Rome", "Oslo"][i % 4] for i in ids],  # oslo: quarantined
        "score": [None if i % 7 == 0 else str(i % 13) for i in ids],
        "email": [f"user{i % 50}@example.org" for i in ids],
        "phone": [f"+49 170 {i:07d}" for i in ids],
        "note": ["x"] * n,
    })


def _write_inputs(world, fmt: str) -> None:  # noqa: F811
    folder = world.repo / "data" / "events"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(3):
        table = _events(1000, k * 1000)
        if fmt == "parquet":
            pq.write_table(table, folder / f"part-{k}.parquet", row_group_size=250)  # 4 row groups each
        else:
            import pyarrow.csv as pacsv

            pacsv.write_csv(table, folder / f"part-{k}.csv")


def _rows(uri: str) -> list[dict]:
    return sorted(DeltaTable(uri).to_pyarrow_table().to_pylist(), key=lambda r: r["id"])


def _meta(uri: str) -> dict:
    return DeltaTable(uri).history(1)[0]


HASH_KEY = ("DASK_TEST_HASH_KEY", "a-hash-key-for-the-dask-test")


@pytest.fixture(autouse=True)
def _hash_key(monkeypatch):
    """Every build here hashes with this key (the builds and LocalCluster workers inherit it). The warm
    build processes an earlier test left in this process were started without it: they are stopped
    first, so the builds here run in processes that see the key."""
    from daemon.adapters.tables import workers

    workers.shutdown()
    monkeypatch.setenv(*HASH_KEY)
    yield
    workers.shutdown()


@pytest.fixture(scope="module")
def scheduler():
    """One running cluster (a scheduler and 2 workers on 127.0.0.1) for the tests that use an existing
    cluster's address; stopped in finally. Its workers inherit the hash key from this environment."""
    import os

    from distributed import LocalCluster

    os.environ[HASH_KEY[0]] = HASH_KEY[1]
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
        os.environ.pop(HASH_KEY[0], None)


def _dask_env(world, scheduler: str) -> None:  # noqa: F811
    env = world.repo / "environments" / "dev.yaml"
    env.write_text(env.read_text() + f"tables:\n  dask: {{scheduler: '{scheduler}', workers: 2, partition_rows: 500}}\n")  # 6 partitions


@pytest.fixture
def local_cluster(world, monkeypatch):  # noqa: F811
    """Each build starts and stops its own LocalCluster (scheduler: local)."""
    _dask_env(world, "local")
    monkeypatch.setenv(*HASH_KEY)


@pytest.fixture
def small_parts(world, scheduler, monkeypatch):  # noqa: F811
    """Builds submit to the running cluster (scheduler: tcp://127.0.0.1:PORT)."""
    _dask_env(world, scheduler)
    monkeypatch.setenv(*HASH_KEY)


@pytest.mark.parametrize("fmt, cluster", [("parquet", "local_cluster"), ("csv", "small_parts")])
def test_dask_build_equals_the_duckdb_build(world, fmt, cluster, request):  # noqa: F811
    request.getfixturevalue(cluster)
    _write_inputs(world, fmt)
    for engine in ("duckdb", "dask"):
        world.write(f"specs/tables/ev_{engine}.yaml", BODY.format(engine=engine, fmt=fmt))
    done = world.converge()
    assert sorted(name for name, _, _ in done) == ["ev_dask", "ev_duckdb"], done
    duck, dask = world.uri("ev_duckdb"), world.uri("ev_dask")
    assert _rows(duck) == _rows(dask)  # same rows, privacy bytes included (hash and mask)
    rows = _rows(dask)
    assert rows and all(len(r["email"]) == 64 and r["phone"].startswith("*") for r in rows)
    m_duck, m_dask = _meta(duck), _meta(dask)
    assert m_dask[DATA_DIGEST] == m_duck[DATA_DIGEST]  # the order-insensitive digest
    counters = {k: m_dask[k] for k in m_dask if k.startswith(ROWS_PREFIX)}
    assert counters == {k: m_duck[k] for k in m_duck if k.startswith(ROWS_PREFIX)}
    assert int(counters[ROWS_PREFIX + "read"]) == 3000 and int(counters[ROWS_PREFIX + "quarantined"]) > 0
    assert int(counters[ROWS_PREFIX + "filtered"]) > 0
    assert set(m_dask) == set(m_duck)  # the lineage has the same shape
    assert json.loads(m_dask["specd.quality"]) == json.loads(m_duck["specd.quality"])
    quarantine = {e: sorted(DeltaTable(world.uri(f"ev_{e}__quarantine")).to_pyarrow_table().to_pylist(), key=lambda r: r["id"])
                  for e in ("duckdb", "dask")}
    assert quarantine["dask"] == quarantine["duckdb"] and quarantine["dask"]
    assert DeltaTable(dask).transaction_version("specd:ev_dask") == 1
    if fmt == "parquet":
        assert len(DeltaTable(dask).file_uris()) == 6  # one file per partition: the workers wrote them
    assert world.converge() == []  # exactly-once: nothing to do for an unchanged spec and input


def test_a_failed_commit_leaves_nothing_and_the_rerun_commits_once(world, small_parts, monkeypatch):  # noqa: F811
    """The build dies after every worker staged its files, before the one commit (what a kill -9 there
    leaves): no version, no staged file left; the re-run commits once."""
    from flows.tables import build, write

    _write_inputs(world, "parquet")
    world.write("specs/tables/ev.yaml", BODY.format(engine="dask", fmt="parquet"))
    graph, ctx = world.graph()
    from daemon.adapters.tables.adapter import TableAdapter

    job = TableAdapter(ctx).job_for(graph.resources[0])
    assert job["dask"]["partition_rows"] == 500
    real = write.commit_staged
    staged: list[str] = []

    def dies(request, files, metadata):
        staged.extend(files.paths)
        raise OSError("killed before the commit")

    monkeypatch.setattr(write, "commit_staged", dies)
    result = build.run_job(job)  # in this process, so the patch applies
    assert not result["ok"] and "killed before the commit" in result["error"], result
    assert len(staged) == 6 and not any(__import__("os").path.exists(p) for p in staged)  # staged by the workers, removed
    assert write.open_table(world.uri("ev")) is None  # no half version
    monkeypatch.setattr(write, "commit_staged", real)
    result = build.run_job(job)
    assert result["ok"], result
    table = DeltaTable(world.uri("ev"))
    assert table.version() == 0 and table.transaction_version("specd:ev") == 1
    ids = [r["id"] for r in _rows(world.uri("ev"))]
    assert len(ids) == len(set(ids)) == int(_meta(world.uri("ev"))[ROWS_PREFIX + "written"])  # every row once


def test_kill_9_mid_build_leaves_no_version_and_the_rerun_commits_once(world, small_parts, tmp_path):  # noqa: F811
    """A real kill -9 of the build process (`python -m flows.tables.build`) while the workers stage files."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from flows.tables import build, write

    folder = world.repo / "data" / "events"
    folder.mkdir(parents=True)
    pq.write_table(_events(6000, 0), folder / "part-0.parquet", row_group_size=100)  # 60 partitions (of 500: 12)
    world.write("specs/tables/ev.yaml", BODY.format(engine="dask", fmt="parquet"))
    graph, ctx = world.graph()
    from daemon.adapters.tables.adapter import TableAdapter

    job = TableAdapter(ctx).job_for(graph.resources[0])
    job["dask"]["partition_rows"] = 100
    (tmp_path / "job.json").write_text(json.dumps(job))
    table_dir = world.home / "lake" / "tables" / "ev"
    process = subprocess.Popen([sys.executable, "-m", "flows.tables.build", str(tmp_path / "job.json"), str(tmp_path / "result.json")],
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and not list(table_dir.rglob("*.parquet")):
            time.sleep(0.02)
        assert process.poll() is None, "the build ended before a file was staged"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert not (tmp_path / "result.json").exists() and write.open_table(world.uri("ev")) is None  # no half version
    result = build.run_job(job)
    assert result["ok"], result
    table = DeltaTable(world.uri("ev"))
    assert table.version() == 0 and table.transaction_version("specd:ev") == 1
    ids = [r["id"] for r in _rows(world.uri("ev"))]
    assert len(ids) == len(set(ids)) == int(_meta(world.uri("ev"))[ROWS_PREFIX + "written"])  # nothing lost, nothing twice


def test_a_table_source_is_read_by_delta_file(world, small_parts):  # noqa: F811
    _write_inputs(world, "parquet")
    world.write("specs/tables/ev.yaml", BODY.format(engine="duckdb", fmt="parquet"))
    for engine in ("duckdb", "dask"):
        world.write(f"specs/tables/up_{engine}.yaml", f"""
            source: {{type: table, inputs: [ev]}}
            engine: {engine}
            features: {{columns: {{big: "amount > 500"}}}}
            partition_by: [city]
            """)
    world.converge()
    assert _rows(world.uri("up_dask")) == _rows(world.uri("up_duckdb"))
    assert _meta(world.uri("up_dask"))["specd.upstream"] == _meta(world.uri("up_duckdb"))["specd.upstream"]


def test_dedupe_is_shuffled_by_key(world, small_parts):  # noqa: F811
    """Duplicates spread over every input partition: the shuffle brings each key group together, so
    the kept rows (the latest per key) and the deduplicated count equal the DuckDB build's."""
    _write_inputs(world, "parquet")
    for engine in ("duckdb", "dask"):
        world.write(f"specs/tables/dd_{engine}.yaml", f"""
            source: {{type: file, path: "data/events/*.parquet", format: parquet}}
            engine: {engine}
            clean: {{dedupe: {{keys: [email], keep_latest_by: id}}, where: "amount >= 0"}}
            features: {{columns: {{n: "amount + 1"}}}}
            """)
    world.converge()
    duck, dask = world.uri("dd_duckdb"), world.uri("dd_dask")
    assert _rows(dask) == _rows(duck) and 0 < len(_rows(dask)) <= 50
    assert _meta(dask)[ROWS_PREFIX + "deduplicated"] == _meta(duck)[ROWS_PREFIX + "deduplicated"] != "0"
    assert _meta(dask)[DATA_DIGEST] == _meta(duck)[DATA_DIGEST]


@pytest.mark.parametrize("feature, named", [
    ("clean: {dedupe: {keys: [id]}, columns: {id: {cast: int64}}}", "clean.dedupe.keys 'id' with clean.columns.id"),
    ("features: {aggregate: {by: [city], aggregates: {n: 'count(*)'}}}", "features.aggregate"),
    ("quality: {columns: {id: {unique: true}}}", "quality.columns.id.unique"),
])
def test_an_unsupported_feature_is_a_validation_error_on_the_engine_line(world, feature, named):  # noqa: F811
    path = world.write("specs/tables/ev.yaml", f"""
        source: {{type: file, path: "data/x.parquet", format: parquet}}
        {feature}
        engine: dask
        """)
    with pytest.raises(SpecErrors) as info:
        compose(world.repo, "dev")
    text = str(info.value)
    assert f"{path.relative_to(world.repo)}:3: engine:" in text and named in text, text


def test_the_default_engine_leaves_the_normalised_spec_and_fingerprint_as_they_were():
    from daemon.schema.table import TableSpec

    base = {"source": {"type": "file", "path": "x.parquet", "format": "parquet"}}
    unset = TableSpec.model_validate(base).model_dump(mode="json", by_alias=True)
    explicit = TableSpec.model_validate({**base, "engine": "duckdb"}).model_dump(mode="json", by_alias=True)
    assert "engine" not in unset and unset == explicit
    assert TableSpec.model_validate({**base, "engine": "dask"}).model_dump(mode="json", by_alias=True)["engine"] == "dask"
    assert TableSpec.model_validate(unset).engine == "duckdb"
