"""Pure parts of the table kind: spec validation, schema diffs, the Delta log reader, watermarks,
the callable allowlist, file digests and the plan's one-line descriptions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from daemon.schema.table import TableSpec
from flows.tables.delta_log import read_table_log
from flows.tables.sources import SourceContext
from flows.tables.sources.callable import allowed
from flows.tables.sources.files import digest_files
from flows.tables.watermark import Watcher, decode_watermark
from flows.tables.write import SchemaMismatch, plan_schema, schema_diff

ROOT = Path(__file__).resolve().parents[2]
FILE = {"type": "file", "path": "data/x.csv", "format": "csv"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": FILE, "schedule": "every day"}, "not a valid cron expression"),
        ({"source": FILE, "write": {"mode": "append"}}, "needs incremental.cursor"),
        ({"source": FILE, "write": {"mode": "merge"}}, "needs write.keys"),
        ({"source": FILE, "incremental": {"cursor": "ts"}}, "need write.mode 'append' or 'merge'"),
        ({"source": FILE, "write": {"mode": "merge", "keys": ["id"]}, "partition_by": ["day"]}, "must be among write.keys"),
        ({"source": {**FILE, "path": "../outside.csv"}}, "escapes its root"),
        ({"source": {"type": "package", "package": "x;y", "path": "a.csv", "format": "csv"}}, "not a Python package name"),
        ({"source": {"type": "callable", "_target_": "os system"}}, "must be 'package.module.function'"),
        ({"source": {"type": "table", "inputs": ["a", "b"]}}, "need a sql query"),
        ({"source": {"type": "synthetic", "rows": 5, "columns": [{"name": "c", "kind": "choice"}]}}, "needs values"),
        ({"source": FILE, "maintenance": {"schedule": "61 * * * *"}}, "not a valid cron expression"),
    ],
)
def test_invalid_table_specs_are_rejected_with_a_reason(data: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TableSpec.model_validate(data)


def test_references_cover_table_inputs_and_feature_joins() -> None:
    spec = TableSpec.model_validate({
        "source": {"type": "table", "inputs": ["a", "b"], "sql": "SELECT * FROM a JOIN b USING (id)"},
        "features": {"joins": [{"table": "c", "on": ["id"]}]},
        "schedule": "*/15 * * * *",
    })
    assert [(r.name, r.field) for r in spec.references()] == [
        ("a", ("source", "inputs", 0)), ("b", ("source", "inputs", 1)), ("c", ("features", "joins", 0, "table"))]
    assert spec.upstream_tables() == ["a", "b", "c"]


def test_schema_policy_enforce_gives_a_readable_diff_and_evolve_only_adds() -> None:
    table = pa.schema([("id", pa.int64()), ("name", pa.string()), ("amount", pa.float64())])
    output = pa.schema([("id", pa.int64()), ("name", pa.large_string()), ("amount", pa.string()), ("channel", pa.string())])
    assert schema_diff(table, output) == [
        "~ amount: table has double, output has string",
        "+ channel: string  (in the output, not in the table)",
    ]
    with pytest.raises(SchemaMismatch, match="policy enforce"):
        plan_schema(output, table, None, "enforce", "t")
    with pytest.raises(SchemaMismatch, match="never changes a type"):
        plan_schema(output, table, None, "evolve", "t")
    grown = pa.schema([*table, pa.field("channel", pa.string())])
    assert plan_schema(grown, table, None, "evolve", "t") == (grown, "merge")
    assert plan_schema(table, table, None, "enforce", "t") == (table, None)


def _commit(log: Path, version: int, actions: list[dict]) -> None:
    log.mkdir(parents=True, exist_ok=True)
    (log / f"{version:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")


def test_log_reader_finds_specd_commits_and_which_versions_lost_their_files(tmp_path: Path) -> None:
    root = tmp_path / "t"
    log = root / "_delta_log"
    info = lambda fp: {"commitInfo": {"timestamp": 1, "operation": "WRITE", "specd.fingerprint": fp, "specd.build_key": fp + "k"}}  # noqa: E731
    _commit(log, 0, [info("a"), {"add": {"path": "p0.parquet"}}])
    _commit(log, 1, [info("b"), {"remove": {"path": "p0.parquet"}}, {"add": {"path": "p1.parquet"}}])
    _commit(log, 2, [{"commitInfo": {"operation": "OPTIMIZE"}}])
    _commit(log, 3, [info("c"), {"remove": {"path": "p1.parquet"}}, {"add": {"path": "day=2024-01-01/p%202.parquet"}}])
    for name in ("p1.parquet", "day=2024-01-01/p 2.parquet"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")  # p0 was vacuumed
    state = read_table_log(str(root))
    assert state is not None and state.version == 3 and state.head_is_specd is not False
    assert [(c.version, c.metadata["specd.fingerprint"], c.complete) for c in state.commits] == [(0, "a", False), (1, "b", True), (3, "c", True)]
    assert read_table_log(str(tmp_path / "missing")) is None


def test_watcher_filters_past_the_watermark_and_tracks_the_new_one() -> None:
    batches = [pa.record_batch({"ts": pa.array([1, 5, None, 9], pa.int64())}), pa.record_batch({"ts": pa.array([3, 12], pa.int64())})]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, iter(batches))
    watcher = Watcher(reader, "ts", 4)
    rows = pa.Table.from_batches(list(watcher.reader()))
    assert rows.column("ts").to_pylist() == [5, 9, 12] and watcher.rows == 3
    assert decode_watermark(watcher.watermark_json()) == 12
    stamp = json.dumps({"type": "timestamp[us]", "value": "2024-03-01T10:00:00"})
    assert decode_watermark(stamp).isoformat() == "2024-03-01T10:00:00"


def test_watcher_keeps_the_sources_own_error_and_accepts_a_columnless_stream() -> None:
    from daemon.shared.errors import ApplyError
    from flows.tables.sources import SourceError

    def failing():
        yield pa.record_batch({"ts": pa.array([1, 2], pa.int64())})
        raise SourceError("table t: GET /items failed after 3 attempts (last: HTTP 503)", transient=True)

    watcher = Watcher(pa.RecordBatchReader.from_batches(pa.schema([("ts", pa.int64())]), failing()), "ts", None)
    with pytest.raises(SourceError):
        list(watcher.reader())
    assert isinstance(watcher.error, SourceError) and isinstance(watcher.error, ApplyError) and watcher.error.transient
    assert watcher.rows == 2
    empty = Watcher(pa.RecordBatchReader.from_batches(pa.schema([]), iter(())), "ts", 7)
    assert empty.columnless and empty.watermark_json() is None and list(empty.reader()) == []


def test_callable_modules_come_from_the_overlay_and_the_env_var_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.adapters.tables.adapter import allowed_modules
    from daemon.schema.environment import EnvironmentSpec

    env = EnvironmentSpec.model_validate({"name": "dev", "tables": {"callable_modules": ["mycompany.loaders."]}})
    monkeypatch.delenv("SPECD_TABLE_CALLABLE_MODULES", raising=False)
    assert allowed_modules(env.tables.callable_modules) == ("flows.tables.sources.", "mycompany.loaders.")
    monkeypatch.setenv("SPECD_TABLE_CALLABLE_MODULES", "other.mod, ,third.")
    assert allowed_modules(env.tables.callable_modules) == ("flows.tables.sources.", "other.mod", "third.")
    with pytest.raises(ValidationError, match="callable_modules"):
        EnvironmentSpec.model_validate({"name": "dev", "tables": {"callable_modules": ["os; rm -rf"]}})


def test_callable_allowlist_matches_module_prefixes_only() -> None:
    prefixes = ("flows.tables.sources.", "mycompany.loaders")
    assert allowed("flows.tables.sources.synthetic.generate", prefixes)
    assert allowed("mycompany.loaders:load", prefixes) and allowed("mycompany.loaders.sub.load", prefixes)
    assert not allowed("os.system", prefixes) and not allowed("mycompany.loadersx.evil", prefixes)
    assert not allowed("flows.tables.build.run_job", prefixes)


def test_repo_files_are_digested_by_content_and_outside_files_by_stat(tmp_path: Path) -> None:
    repo, outside = tmp_path / "repo", tmp_path / "data"
    for d in (repo, outside):
        d.mkdir()
        (d / "a.csv").write_text("x\n1\n")
    first = digest_files([repo / "a.csv"], repo, repo)
    os.utime(repo / "a.csv", (1, 1))  # a fresh checkout: new mtime, same content
    assert digest_files([repo / "a.csv"], repo, repo) == first
    (repo / "a.csv").write_text("x\n2\n")
    assert digest_files([repo / "a.csv"], repo, repo) != first
    before = digest_files([outside / "a.csv"], outside, repo)
    os.utime(outside / "a.csv", (5, 5))
    assert digest_files([outside / "a.csv"], outside, repo) != before


def test_missing_files_name_the_table_and_the_path(tmp_path: Path) -> None:
    from flows.tables.sources import SourceError
    from flows.tables.sources.files import resolve_files

    spec = TableSpec.model_validate({"source": {**FILE, "path": "data/*.csv"}}).source
    with pytest.raises(SourceError, match=r"table orders: source.path 'data/\*.csv' matched no files"):
        resolve_files(spec, SourceContext("orders", tmp_path, tmp_path))


def test_adapter_import_and_observe_stay_light(tmp_path: Path) -> None:
    code = f"""
import sys
from pathlib import Path
from daemon.core.compose import compose
from daemon.core.graph import build_graph
from daemon.adapters.base import AdapterContext
from daemon.adapters.tables.adapter import TableAdapter
composed = compose(Path({str(ROOT)!r}), "dev")
tables = [r for r in build_graph(composed).resources if r.kind == "table"]
observed = TableAdapter(AdapterContext(composed.env, Path({str(tmp_path)!r}), Path({str(ROOT)!r}), "x")).observe(tables)
assert len(observed) == len(tables) >= 7, observed
heavy = sorted(m for m in ("torch", "bentoml", "prefect", "deltalake", "duckdb", "pandas", "lightning") if m in sys.modules)
print(",".join(heavy))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
