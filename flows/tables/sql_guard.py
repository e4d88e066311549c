"""The SQL a spec may run: one SELECT over the declared tables, calling only pure DuckDB functions.

Table-source SQL, feature expressions and quality rules run inside the build worker, a process of the
privileged user that runs specd. DuckDB can read any file (`read_csv('/etc/passwd')`, `FROM
'/etc/passwd'`), list directories (`glob`), show its settings (`current_setting`, `duckdb_settings()`),
attach databases, install extensions and write files (`COPY ... TO`). Two layers keep spec SQL to what
the spec language grants:

1. **Parse time** (validate, plan, and again in the worker just before running): DuckDB's own parser
   (`extract_statements` for the statement type, `json_serialize_sql` for the tree) must see exactly
   one SELECT; every table it reads must be a declared input (or a CTE of the query itself); every
   table function must be one of the few pure generators (`range`, `unnest`, ...); every other
   function must be a built-in scalar, aggregate, window or macro of DuckDB that is not on the
   denylist. Both lists are derived from `duckdb_functions()` of the installed DuckDB, so a function a
   new version adds is refused until it is known (allowlist), and the denylist is a name pattern
   (files, settings, secrets, environment, extensions, logs, sequences, SQL-from-strings).
2. **Run time** (`sandbox`): the worker's connection runs with `enable_external_access=false`, no
   extension autoload/autoinstall, `allowed_directories` limited to our own staging, and
   `lock_configuration=true`, so even SQL that slipped past layer 1 cannot reach files, the network
   or the settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

# Table functions that only generate values from their arguments.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree", "repeat"})
# Scalar/aggregate functions whose name says they reach outside the row: files, settings, secrets,
# the environment, extensions, logs, sequences, the query text, or SQL built from strings.
_DENIED = re.compile(
    r"getenv|setting|secret|extension|variable|sequence|nextval|currval|setval|query|_sql|sql_|"
    r"duckdb|logging|_log_|log_message|file|glob|^read_|write|sniff|parquet|pragma|checkpoint|profil|"
    r"resource|grammar|connection_id|transaction_id|txid|^current_(user|role|catalog|database|schema)|"
    r"^(user|session_user)$|privilege|temp_schema|in_search_path|version$|platform|^error$|"
    r"^__|^pg_|description$|sleep|setseed|serialize|_plan$",
    re.IGNORECASE,
)
# What a FROM clause and a query may be made of (SHOW/DESCRIBE/SUMMARIZE parse as a SELECT over a
# SHOW_REF that lists the catalog: not allowed; any node type a new DuckDB adds is refused until listed).
_TABLE_REFS = frozenset({"BASE_TABLE", "TABLE_FUNCTION", "JOIN", "SUBQUERY", "EMPTY", "EXPRESSION_LIST", "PIVOT"})
_QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
_MACRO_BODY_DENIED = re.compile(r"\bFROM\b|read_|getenv|setting|current_query|duckdb_|pragma_", re.IGNORECASE)


@cache
def _connection():
    import duckdb

    connection = duckdb.connect(":memory:")
    sandbox(connection)
    return connection


@cache
def _function_catalogue() -> tuple[tuple[str, str, str], ...]:
    """(name, type, macro body) of every function of this DuckDB, read once per process: both lists
    below come from this one `duckdb_functions()` scan on one fresh, unsandboxed connection (a scan and a
    connection each cost a plan ~20–40 ms), with exactly the rows the two separate queries read."""
    import duckdb

    connection = duckdb.connect(":memory:")
    try:
        return tuple(connection.execute(
            "SELECT DISTINCT function_name, function_type, coalesce(macro_definition, '') FROM duckdb_functions() "
            "WHERE function_type IN ('scalar', 'aggregate', 'window', 'macro', 'table', 'table_macro', 'pragma')"
        ).fetchall())
    finally:
        connection.close()


_SCALAR_TYPES = frozenset({"scalar", "aggregate", "window", "macro"})
_TABLE_TYPES = frozenset({"table", "table_macro", "pragma"})


@cache
def allowed_functions() -> frozenset[str]:
    """Every built-in scalar, aggregate, window and macro function of this DuckDB that is not denied."""
    rows = [row for row in _function_catalogue() if row[1] in _SCALAR_TYPES]
    denied = {name.lower() for name, kind, body in rows  # an overload that is denied denies the name
              if _DENIED.search(name) or (kind == "macro" and _MACRO_BODY_DENIED.search(body))}
    return frozenset(name.lower() for name, _, _ in rows) - denied


@cache
def denied_table_functions() -> frozenset[str]:
    """Every table function, table macro and pragma of this DuckDB except the pure generators."""
    return frozenset(name.lower() for name, kind, _ in _function_catalogue() if kind in _TABLE_TYPES) - SAFE_TABLE_FUNCTIONS


def sandbox(connection: Any, allowed_directories: Iterable[str] = ()) -> Any:
    """Lock a DuckDB connection down: no files (except `allowed_directories`, our own staging), no
    network, no extensions, no setting changes. Call after the connection's own settings."""
    connection.execute("SET autoinstall_known_extensions = false")
    connection.execute("SET autoload_known_extensions = false")
    directories = [str(d).rstrip("/") + "/" for d in allowed_directories]
    if directories:
        listed = ", ".join("'" + d.replace("'", "''") + "'" for d in directories)
        connection.execute(f"SET allowed_directories = [{listed}]")
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")
    return connection


def _walk(node: Any, skip: set[int]):
    if isinstance(node, dict):
        if id(node) not in skip:
            yield node
        for value in node.values():
            yield from _walk(value, skip)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, skip)


def statement_problem(sql: str) -> str | None:
    """Why `sql` is not exactly one SELECT statement, or None."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        return f"DuckDB cannot parse it: {str(exc).splitlines()[0]}"
    if len(statements) != 1:
        return f"it must be exactly one SELECT statement (found {len(statements)} statements)"
    kind = str(statements[0].type).rsplit(".", 1)[-1]
    if kind != "SELECT":
        return f"only a SELECT statement is allowed, not {kind}"
    return None


def tree(sql: str) -> dict[str, Any]:
    return json.loads(_connection().execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])


def tree_problems(parsed: dict[str, Any], tables: Iterable[str] | None) -> list[str]:
    """What a parsed SELECT does that spec SQL may not: unknown tables (`tables` None: no table at all),
    denied table functions, functions outside the allowlist, qualified names."""
    allowed_tables = {t.lower() for t in tables} if tables is not None else set()
    ctes: set[str] = set()
    nodes = list(_walk(parsed, set()))
    for node in nodes:
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            ctes.update(str(entry.get("key", "")).lower() for entry in cte_map.get("map", []))
    table_function_nodes = {id(n["function"]) for n in nodes if n.get("type") == "TABLE_FUNCTION" and isinstance(n.get("function"), dict)}
    problems: list[str] = []
    functions = allowed_functions()
    denied_tables = denied_table_functions()
    for node in nodes:
        node_type = node.get("type")
        if "sample" in node and "alias" in node and node_type not in _TABLE_REFS:
            problems.append(f"{str(node_type).replace('_REF', '').lower()} queries (SHOW, DESCRIBE, SUMMARIZE) are not allowed: select from the declared inputs")
        elif "cte_map" in node and "modifiers" in node and node_type not in _QUERY_NODES:
            problems.append(f"query node {node_type} is not allowed")
        if node_type == "BASE_TABLE":
            name = str(node.get("table_name", ""))
            if node.get("schema_name") or node.get("catalog_name"):
                problems.append(f"table {'.'.join(node.get('qualified_name', {}).get('path', [name]))!r}: qualified table names are not allowed")
            elif tables is None:
                problems.append(f"reads table {name!r}: an expression may not read tables (join them under features.joins)")
            elif name.lower() not in allowed_tables and name.lower() not in ctes:
                known = ", ".join(sorted(allowed_tables)) or "none"
                problems.append(f"reads {name!r}, which is not a declared input (inputs: {known})")
        elif node_type == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if function.get("schema") or function.get("catalog"):
                problems.append(f"table function {name!r}: qualified function names are not allowed")
            elif name not in SAFE_TABLE_FUNCTIONS:
                why = "reads files, settings or the catalog" if name in denied_tables else "is not a known pure table function"
                problems.append(f"table function {name}() is not allowed: it {why} (allowed: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))})")
        elif node.get("class") in ("FUNCTION", "WINDOW") and "function_name" in node and id(node) not in table_function_nodes:
            name = str(node["function_name"]).lower()
            if node.get("schema") or node.get("catalog"):
                problems.append(f"function {name!r}: qualified function names are not allowed")
            elif name not in functions:
                if _DENIED.search(name) or name in denied_tables:
                    problems.append(f"function {name}() is not allowed: it reaches files, settings, the environment or the catalog")
                else:
                    problems.append(f"unknown function {name}() (not a built-in DuckDB function specd allows)")
    return list(dict.fromkeys(problems))


def check_select(sql: str, tables: Iterable[str]) -> str | None:
    """Why `sql` may not run as a table source over `tables`, or None."""
    problem = statement_problem(sql)
    if problem:
        return problem
    parsed = tree(sql)
    if parsed.get("error"):
        return f"DuckDB cannot parse it: {parsed.get('error_message', 'syntax error')}"
    problems = tree_problems(parsed, list(tables))
    return "; ".join(problems) if problems else None
