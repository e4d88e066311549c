"""Family 1: spec SQL is one SELECT over the declared inputs, with pure functions only — refused at
validate (file:line: field: message) and, were validate bypassed, refused again in the worker, whose
DuckDB connection cannot reach files, the network, extensions or settings anyway."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flows.tables.sources import SourceContext, SourceError
from tests.security.helpers import RAW_TABLE, files_outside, validate_errors

SOURCE_SQL = [  # (sql, expected message fragment)
    ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv() is not allowed"),
    ("SELECT * FROM '/etc/passwd'", "reads '/etc/passwd', which is not a declared input"),
    ("SELECT * FROM read_text('/etc/hostname')", "table function read_text() is not allowed"),
    ("SELECT * FROM read_blob('/etc/passwd')", "table function read_blob() is not allowed"),
    ("SELECT * FROM glob('/etc/*')", "table function glob() is not allowed"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "table function sniff_csv() is not allowed"),
    ("SELECT * FROM parquet_metadata('x.parquet')", "table function parquet_metadata() is not allowed"),
    ("SELECT * FROM duckdb_settings()", "table function duckdb_settings() is not allowed"),
    ("SELECT * FROM query('SELECT 42')", "table function query() is not allowed"),
    ("SELECT * FROM query_table('raw')", "table function query_table() is not allowed"),
    ("SELECT getenv('HOME') AS h FROM raw", "function getenv() is not allowed"),
    ("SELECT current_setting('home_directory') AS h FROM raw", "function current_setting() is not allowed"),
    ("SELECT nextval('s') AS n FROM raw", "function nextval() is not allowed"),
    ("SELECT (SELECT content FROM read_text('/etc/passwd')) AS c FROM raw", "table function read_text() is not allowed"),
    ("WITH x AS (SELECT * FROM read_json('/etc/x.json')) SELECT * FROM x", "table function read_json() is not allowed"),
    ("SELECT * FROM raw UNION ALL SELECT * FROM read_parquet('/x/*.parquet')", "table function read_parquet() is not allowed"),
    ("SELECT pg_sleep(1000) AS s FROM raw", "function pg_sleep() is not allowed"),
    ("SELECT json_serialize_sql('SELECT 1') AS s FROM raw", "function json_serialize_sql() is not allowed"),
    ("SELECT * FROM json_execute_serialized_sql('{}')", "table function json_execute_serialized_sql() is not allowed"),
    ("SELECT http_get('http://127.0.0.1/') AS s FROM raw", "unknown function http_get()"),
    ("SELECT * FROM st_read('/etc/passwd')", "table function st_read() is not allowed: it is not a known pure table function"),
    ("SELECT * FROM sqlite_scan('/tmp/x.db', 't')", "table function sqlite_scan() is not allowed"),
    ("SELECT * FROM \"READ_CSV\"('/etc/passwd')", "table function read_csv() is not allowed"),
    ("SELECT * FROM raw, LATERAL (SELECT * FROM read_text('/etc/passwd'))", "table function read_text() is not allowed"),
    ("SELECT * FROM other_table", "reads 'other_table', which is not a declared input (inputs: raw)"),
    ("SELECT * FROM main.raw", "qualified table names are not allowed"),
    ("SELECT system.main.version() AS v FROM raw", "qualified function names are not allowed"),
    ("SELECT * FROM system.main.duckdb_tables()", "qualified function names are not allowed"),
    ("SHOW TABLES", "queries (SHOW, DESCRIBE, SUMMARIZE) are not allowed"),
    ("DESCRIBE raw", "queries (SHOW, DESCRIBE, SUMMARIZE) are not allowed"),
    ("SUMMARIZE raw", "queries (SHOW, DESCRIBE, SUMMARIZE) are not allowed"),
    ("COPY (SELECT 1) TO '/tmp/specd-pwned.csv'", "only a SELECT statement is allowed, not COPY"),
    ("ATTACH '/tmp/specd-pwned.db' AS x", "only a SELECT statement is allowed, not ATTACH"),
    ("DETACH x", "only a SELECT statement is allowed, not DETACH"),
    ("INSTALL httpfs", "only a SELECT statement is allowed, not LOAD"),
    ("LOAD httpfs", "only a SELECT statement is allowed, not LOAD"),
    ("SET enable_external_access = true", "only a SELECT statement is allowed, not SET"),
    ("RESET lock_configuration", "only a SELECT statement is allowed, not SET"),
    ("PRAGMA version", "only a SELECT statement is allowed, not PRAGMA"),
    ("CALL pragma_version()", "only a SELECT statement is allowed, not CALL"),
    ("EXPORT DATABASE '/tmp/specd-pwned'", "only a SELECT statement is allowed, not EXPORT"),
    ("CREATE TABLE x AS SELECT 1", "only a SELECT statement is allowed, not CREATE"),
    ("SELECT 1 AS a; SELECT 2 AS a", "exactly one SELECT statement (found 2 statements)"),
    ("SELECT * FROM raw; COPY raw TO '/tmp/specd-pwned.csv'", "exactly one SELECT statement (found 2 statements)"),
]

EXPRESSIONS = [  # (yaml field block, field, expected)
    ("features:\n  columns:\n    h: \"getenv('HOME')\"\n", "features.columns.h", "function getenv() is not allowed"),
    ("features:\n  columns:\n    h: \"current_setting('threads')\"\n", "features.columns.h", "function current_setting() is not allowed"),
    ("features:\n  columns:\n    h: \"read_text('/etc/passwd')\"\n", "features.columns.h", "function read_text() is not allowed"),
    ("features:\n  columns:\n    h: \"(SELECT 1)\"\n", "features.columns.h", "subqueries are not allowed"),
    ("features:\n  columns:\n    h: \"query_table('raw')\"\n", "features.columns.h", "function query_table() is not allowed"),
    ("quality:\n  rules:\n    leak: \"current_setting('home_directory') IS NOT NULL\"\n", "quality.rules.leak", "function current_setting() is not allowed"),
    ("quality:\n  rules:\n    leak: \"glob('/etc/*') IS NOT NULL\"\n", "quality.rules.leak", "function glob() is not allowed"),
    ("clean:\n  where: \"getenv('USER') = 'root'\"\n", "clean.where", "function getenv() is not allowed"),
]


def _repo(spec_repo, table: str) -> Path:
    spec_repo.write("specs/data/raw.csv", "id,amount,note\n1,2.5,a\n")
    spec_repo.write("specs/tables/raw.yaml", RAW_TABLE)
    spec_repo.write("specs/tables/t.yaml", table)
    return spec_repo.path


def _sql_block(sql: str) -> str:
    return "source:\n  type: table\n  inputs: [raw]\n  sql: |\n    " + sql + "\n"


@pytest.mark.parametrize(("sql", "expected"), SOURCE_SQL, ids=[s for s, _ in SOURCE_SQL])
def test_source_sql_refused_at_validate(spec_repo, tmp_path, sql, expected):
    errors = validate_errors(_repo(spec_repo, _sql_block(sql)), tmp_path / "home")
    assert len(errors) == 1, errors
    assert errors[0].startswith("specs/tables/t.yaml:4: source.sql: "), errors
    assert expected in errors[0], errors


@pytest.mark.parametrize(("block", "field", "expected"), EXPRESSIONS, ids=[f"{f}:{e}" for _, f, e in EXPRESSIONS])
def test_expressions_refused_at_validate(spec_repo, tmp_path, block, field, expected):
    errors = validate_errors(_repo(spec_repo, "source:\n  type: table\n  inputs: [raw]\n" + block), tmp_path / "home")
    assert any(e.startswith("specs/tables/t.yaml:") and f": {field}: " in e and expected in e for e in errors), errors


def test_harmless_sql_passes(spec_repo, tmp_path):
    sql = ("WITH r AS (SELECT id, amount FROM raw) SELECT r.id, upper(note) AS note, amount * 2 AS twice, "
           "list_transform([1, 2], lambda x: x + 1) AS l, strftime(DATE '2024-01-01', '%Y') AS y "
           "FROM r JOIN raw USING (id), range(2) g")
    assert validate_errors(_repo(spec_repo, _sql_block(sql)), tmp_path / "home") == []


@pytest.mark.parametrize(("sql", "expected"), SOURCE_SQL, ids=[s for s, _ in SOURCE_SQL])
def test_source_sql_refused_in_the_worker_if_validate_is_bypassed(tmp_path, sql, expected):
    from daemon.schema.table import TableSource
    from flows.tables.sources import tables

    spec = TableSource.model_construct(type="table", inputs=["raw"], sql=sql)
    ctx = SourceContext("t", tmp_path, tmp_path, upstream={"raw": str(tmp_path / "lake" / "raw")})
    with pytest.raises(SourceError) as info:
        tables.read(spec, ctx)
    assert "source.sql refused" in str(info.value) and expected in str(info.value)


RUNTIME = [  # what the locked connection refuses even with the parse check skipped
    "SELECT * FROM read_csv('{outside}/secret.csv')",
    "SELECT * FROM read_text('{outside}/secret.csv')",
    "SELECT * FROM glob('{outside}/*')",
    "SELECT * FROM '{outside}/secret.csv'",
    "COPY (SELECT 42) TO '{outside}/written.csv'",
    "ATTACH '{outside}/attached.db' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "RESET lock_configuration",
    "EXPORT DATABASE '{outside}/export'",
]


@pytest.mark.parametrize("statement", RUNTIME)
def test_worker_connection_is_locked(tmp_path, statement):
    import duckdb

    from flows.tables.sql_guard import sandbox

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("a\nsecret\n")
    staging = tmp_path / "staging"
    staging.mkdir()
    since = time.time()
    connection = duckdb.connect(str(staging / "build.duckdb"))
    sandbox(connection, [str(staging)])
    with pytest.raises(duckdb.Error) as info:
        connection.execute(statement.format(outside=outside)).fetchall()
    assert any(word in str(info.value) for word in ("disabled", "Permission", "Cannot change", "does not exist")), info.value
    assert files_outside(tmp_path, since, [staging]) == []  # nothing written outside the staging folder


def test_worker_connection_still_reads_registered_inputs(tmp_path):
    import duckdb
    import pyarrow as pa

    from flows.tables.sql_guard import sandbox

    connection = sandbox(duckdb.connect())
    connection.register("raw", pa.table({"id": [1, 2]}))
    assert connection.execute("SELECT sum(id) FROM raw").fetchone() == (3,)


def test_file_source_reads_only_its_own_folder(tmp_path):
    import duckdb

    from flows.tables.sources import files

    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.csv").write_text("a\n1\n")
    ctx = SourceContext("t", data, data)
    reader = files.read_paths([data / "ok.csv"], "csv", {}, None, ctx)
    assert reader.read_all().num_rows == 1
    # the connection that read it was locked: a second statement on it could not reach other files
    connection = duckdb.connect()
    from flows.tables.sql_guard import sandbox

    sandbox(connection, [str(data)])
    assert connection.execute(f"SELECT count(*) FROM read_csv('{data / 'ok.csv'}')").fetchone() == (1,)
    with pytest.raises(duckdb.Error):
        connection.execute("SELECT * FROM read_csv('/etc/passwd')").fetchall()


def test_allowlist_is_derived_from_this_duckdb():
    from flows.tables.sql_guard import allowed_functions, denied_table_functions

    functions = allowed_functions()
    assert {"upper", "sum", "strftime", "list_transform", "row_number", "lower"} <= functions
    assert not {"getenv", "current_setting", "nextval", "read_text", "read_csv", "glob"} & functions
    denied = denied_table_functions()
    assert {"read_csv", "read_text", "glob", "query", "query_table", "duckdb_settings", "sniff_csv", "parquet_metadata"} <= denied
    assert "range" not in denied and "unnest" not in denied


APPLY_BYPASS = [  # (table spec that composes (the schema does not parse SQL) but validate's check refuses, expected)
    ("source:\n  type: table\n  inputs: [raw]\n  sql: \"COPY raw TO '{out}/copied.csv'\"\n", "only a SELECT statement is allowed, not COPY"),
    ("source:\n  type: table\n  inputs: [raw]\n  sql: \"SELECT * FROM read_csv('/etc/passwd')\"\n", "table function read_csv() is not allowed"),
    ("source:\n  type: table\n  inputs: [raw]\nfeatures:\n  columns:\n    h: \"getenv('HOME')\"\n", "function getenv() is not allowed"),
    ("source:\n  type: table\n  inputs: [raw]\nquality:\n  rules:\n    r: \"current_setting('threads') > 0\"\n", "function current_setting() is not allowed"),
]


@pytest.mark.parametrize(("text", "expected"), APPLY_BYPASS, ids=["copy", "read_csv", "getenv", "current_setting"])
def test_apply_refuses_what_validate_would_if_validate_is_bypassed(world, tmp_path, text, expected):
    from daemon.shared.errors import ApplyError

    out = tmp_path / "outside"
    out.mkdir()
    world.write("specs/data/raw.csv", "id,amount,note\n1,2.5,a\n")
    world.write("specs/tables/raw.yaml", RAW_TABLE)
    world.write("specs/tables/t.yaml", text.replace("{out}", str(out)))
    plan, graph, adapter = world.plan()  # compose + graph only: the adapter's validate check is skipped
    since = time.time()
    raw = next(a for a in plan.changes if a.name == "raw")
    adapter.apply(raw, graph.by_key()[raw.key])
    hostile = next(a for a in plan.changes if a.name == "t")
    with pytest.raises(ApplyError) as info:
        adapter.apply(hostile, graph.by_key()[hostile.key])
    assert expected in str(info.value), info.value
    assert not (Path(world.uri("t")) / "_delta_log").exists()  # nothing committed
    assert files_outside(tmp_path, since, [world.home]) == []  # nothing written outside the state home
