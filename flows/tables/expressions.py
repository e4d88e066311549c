"""Safe SQL text for the transform stages: quoting, literals, and DuckDB's own check of spec expressions.

The stages paste identifiers, literals and expressions from specs into statements. Identifiers and
literals are always quoted here; expressions were already checked lexically by the spec models, and
`check_table_expressions` parses each one with DuckDB (`json_serialize_sql`, no data, no catalog) so a
bad expression is reported with its field at validate/plan time instead of failing a build later.
Subqueries are refused: an expression that reads another table would bypass the dependency graph.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from typing import Any

REASON_COLUMN = "_specd_quarantine_reason"


def ident(name: str) -> str:
    """A quoted DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A DuckDB literal for a scalar from a spec (str, int, float, bool, None)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"'{value}'::DOUBLE"
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"unsupported literal {value!r}")


_SAFE_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ,()\[\]=:]*$")
_STRING_TYPES = {"VARCHAR", "STRING", "TEXT", "UTF8", "LARGE_STRING", "CHAR", "BPCHAR"}
_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}


def sql_type(name: str) -> str:
    """A DuckDB type name for a column type reported by the engine (Arrow or DuckDB spelling)."""
    from daemon.schema.table_transforms import duckdb_type

    try:
        return duckdb_type(name)
    except ValueError:
        if not _SAFE_TYPE.match(name):
            raise ValueError(f"unsupported column type {name!r}") from None
        return name.upper()


def is_string_type(name: str) -> bool:
    return sql_type(name).split("(")[0] in _STRING_TYPES


def is_integer_type(name: str) -> bool:
    return sql_type(name) in _INTEGER_TYPES


# ---------------------------------------------------------------- DuckDB parser check
_ROLE_TEMPLATES = {
    "scalar": "SELECT ({expr}) AS _specd_x",
    "predicate": "SELECT 1 WHERE ({expr})",
    "aggregate": "SELECT ({expr}) AS _specd_x",
    "window": "SELECT {expr} OVER () AS _specd_x",
}


@cache
def _connection():
    import duckdb

    from flows.tables.sql_guard import sandbox

    return sandbox(duckdb.connect(":memory:"))


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


_TREES: dict[str, dict[str, Any]] = {}  # statement → parse tree: one DuckDB call per statement per process
_TREES_LIMIT = 100_000


def parse_tree(statement: str) -> dict[str, Any]:
    """DuckDB's parse tree of one SQL statement as JSON data (`error` is true when it does not parse)."""
    tree = _TREES.get(statement)
    if tree is None:
        tree = json.loads(_connection().execute("SELECT json_serialize_sql(?)", [statement]).fetchone()[0])
        _remember(statement, tree)
    return tree


def _remember(statement: str, tree: dict[str, Any]) -> None:
    if len(_TREES) >= _TREES_LIMIT:
        _TREES.clear()
    _TREES[statement] = tree


def prefetch_parse_trees(statements: list[str]) -> None:
    """Parse many statements in one DuckDB query (a call costs ~4 ms, a row ~0.1 ms), for parse_tree."""
    missing = list(dict.fromkeys(s for s in statements if s not in _TREES))
    if not missing:
        return
    rows = _connection().execute("SELECT s, json_serialize_sql(s) FROM unnest(?::VARCHAR[]) AS t(s)", [missing]).fetchall()
    for statement, tree in rows:
        _remember(statement, json.loads(tree))


def walk(node: Any):
    """Every JSON object in a parse tree, depth first."""
    return _walk(node)


_VERDICTS: dict[tuple[str, str], str | None] = {}  # (expr, role) → check_expression's answer, per process


def check_expression(expr: str, role: str = "scalar") -> str | None:
    """Why DuckDB would not accept `expr` in its slot, or None. Needs no data and no tables."""
    key = (expr, role)
    if key not in _VERDICTS:
        if len(_VERDICTS) >= _TREES_LIMIT:
            _VERDICTS.clear()
        _VERDICTS[key] = _check_expression(expr, role)
    return _VERDICTS[key]


def _check_expression(expr: str, role: str) -> str | None:
    from daemon.schema.table_transforms import check_expression_text

    problem = check_expression_text(expr)
    if problem:
        return problem
    if role == "window" and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*\(.*\)$", expr, re.DOTALL):
        return "a window expression must be one function call, e.g. sum(amount) or lag(amount, 1)"
    tree = parse_tree(_ROLE_TEMPLATES[role].format(expr=expr))
    if tree.get("error"):
        return f"DuckDB cannot parse it: {tree.get('error_message', 'syntax error')}"
    statements = tree.get("statements", [])
    if len(statements) != 1:
        return "it must be exactly one expression"
    node = statements[0]["node"]
    if node.get("type") != "SELECT_NODE" or len(node.get("select_list", [])) != 1:
        return "it must be exactly one expression"
    if role == "window" and node["select_list"][0].get("class") != "WINDOW":
        return "a window expression must be an aggregate or window function call"
    expression_part = node["where_clause"] if role == "predicate" else node["select_list"]
    for item in _walk(expression_part):
        if item.get("class") == "SUBQUERY":
            return "subqueries are not allowed (join the other table under features.joins instead)"
    from flows.tables.sql_guard import tree_problems

    problems = tree_problems({"statements": [{"node": {"select_list": node["select_list"], "where_clause": node.get("where_clause")}}]}, None)
    return "; ".join(problems) if problems else None


def check_regex(pattern: str) -> str | None:
    """DuckDB uses RE2, which rejects some Python-valid patterns (look-arounds, backreferences)."""
    key = (pattern, "regex")
    if key not in _VERDICTS:
        _VERDICTS[key] = _check_regex(pattern)
    return _VERDICTS[key]


def _check_regex(pattern: str) -> str | None:
    try:
        _connection().execute("SELECT regexp_matches('', ?)", [pattern]).fetchall()
    except Exception as exc:  # duckdb raises InvalidInputException with RE2's message
        return f"DuckDB (RE2) rejects the pattern: {str(exc).splitlines()[0]}"
    return None


def _items(spec: Any) -> list[tuple[str, str]]:
    """The (expression or pattern, role) pairs check_table_expressions checks for `spec`."""
    items: list[tuple[str, str]] = []
    clean = getattr(spec, "clean", None)
    if clean is not None and clean.where:
        items.append((clean.where, "predicate"))
    features = getattr(spec, "features", None)
    if features is not None:
        items.extend((expr, "predicate" if path[-1] == "having" else role) for path, expr, role in features.expressions())
    quality = getattr(spec, "quality", None)
    if quality is not None:
        items.extend((expr, "predicate") for expr in quality.rules.values())
        items.extend((checks.regex, "regex") for checks in quality.columns.values() if checks.regex is not None)
    return items


def check_many_table_expressions(specs: list[Any], verdicts_path: Any = None) -> list[list[tuple[tuple, str]]]:
    """check_table_expressions of each spec, with every new statement parsed in one DuckDB query;
    with `verdicts_path`, verdicts are read from and (when some were new) written to that JSON file."""
    from daemon.schema.table_transforms import check_expression_text

    if verdicts_path is not None:
        load_verdicts(verdicts_path)
    items = [item for spec in specs for item in _items(spec)]
    new = [(expr, role) for expr, role in items if (expr, role) not in _VERDICTS]
    prefetch_parse_trees([
        _ROLE_TEMPLATES[role].format(expr=expr) for expr, role in new if role != "regex" and not check_expression_text(expr)
    ])
    results = [check_table_expressions(spec) for spec in specs]
    if verdicts_path is not None and new:
        try:
            save_verdicts(verdicts_path, dict.fromkeys(items))
        except OSError:  # a read-only state home only costs the next run the DuckDB parse
            pass
    return results


def check_table_expressions(spec: Any) -> list[tuple[tuple, str]]:
    """(field path, message) for every SQL expression of a table spec that DuckDB would reject.

    `spec` is a TableSpec (or anything with optional clean/features/quality attributes). The core's
    TableAdapter.check turns these into SpecIssues at validate/plan time.
    """
    problems: list[tuple[tuple, str]] = []
    source = getattr(spec, "source", None)
    if getattr(source, "type", None) == "table" and source.sql is not None:
        from flows.tables.sql_guard import check_select

        problem = check_select(source.sql, source.inputs)
        if problem:
            problems.append((("source", "sql"), problem))
    clean = getattr(spec, "clean", None)
    if clean is not None and clean.where:
        problem = check_expression(clean.where, "predicate")
        if problem:
            problems.append((("clean", "where"), problem))
    features = getattr(spec, "features", None)
    if features is not None:
        for path, expr, role in features.expressions():
            problem = check_expression(expr, "predicate" if path[-1] == "having" else role)
            if problem:
                problems.append((("features", *path), problem))
    quality = getattr(spec, "quality", None)
    if quality is not None:
        for name, expr in quality.rules.items():
            problem = check_expression(expr, "predicate")
            if problem:
                problems.append((("quality", "rules", name), problem))
        for column, checks in quality.columns.items():
            if checks.regex is not None:
                problem = check_regex(checks.regex)
                if problem:
                    problems.append((("quality", "columns", column, "regex"), problem))
    return problems


# ---------------------------------------------------------------- verdicts kept on disk
def _verdicts_version() -> str:
    """DuckDB's version and this checking code (the sandbox's rules included): a stored verdict holds only for both."""
    import hashlib
    from pathlib import Path

    from daemon.schema import table_transforms
    from flows.tables import sql_guard

    h = hashlib.sha256(_duckdb_version().encode())
    for source in (Path(__file__), Path(table_transforms.__file__), Path(sql_guard.__file__)):
        h.update(source.read_bytes())
    return h.hexdigest()


def _duckdb_version() -> str:
    """The installed DuckDB's distribution name and version, as its `duckdb-<version>.dist-info` folder
    beside the package says, without importing DuckDB or `importlib.metadata` (~8 ms of every second
    `specd plan`); `importlib.metadata` where that folder is not found (an egg, a zip)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("duckdb")
    if spec is not None and spec.origin:
        site = os.path.dirname(os.path.dirname(spec.origin))
        try:
            found = sorted(n for n in os.listdir(site) if n.lower().startswith("duckdb-") and n.endswith(".dist-info"))
        except OSError:
            found = []
        if len(found) == 1:
            return found[0].removesuffix(".dist-info")
    from importlib.metadata import version

    return "duckdb-" + version("duckdb")


def load_verdicts(path: Any) -> None:
    """Add the verdicts a previous process stored at `path` (JSON; a damaged or stale file is ignored),
    so a second `specd plan` does not even import DuckDB when no expression changed."""
    from pathlib import Path

    try:
        stored = json.loads(Path(path).read_text(encoding="utf-8"))
        if stored.get("version") != _verdicts_version():
            return
        for expr, role, verdict in stored["verdicts"]:
            if isinstance(expr, str) and isinstance(role, str) and (verdict is None or isinstance(verdict, str)):
                _VERDICTS.setdefault((expr, role), verdict)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return


def save_verdicts(path: Any, keys: Any) -> None:
    """Store the verdicts of `keys` ((expr, role) pairs; the ones this check used) at `path`, atomically."""
    import os
    import tempfile
    from pathlib import Path

    target = Path(path)
    rows = [[expr, role, _VERDICTS[(expr, role)]] for expr, role in keys if (expr, role) in _VERDICTS]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".sql-checks-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"version": _verdicts_version(), "verdicts": rows}, handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
