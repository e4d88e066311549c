"""PII lineage at validation time: no derived column may carry a protected column's plaintext.

Privacy protects columns by name, per batch, just before the write. A column *derived* from a protected
one (`email_lower: lower(email)`, `domain: split_part(email, '@', 2)`, `contact` in a source query's
`SELECT email AS contact`) has another name and would reach the Delta files in plaintext. So every
expression that computes a column is parsed with DuckDB (`json_serialize_sql`: no data, no catalog) and
its column references are followed through the feature steps in evaluation order:

- a column is *tainted* when it is declared under `privacy.columns`, or derived from a tainted one;
- a tainted derived column that reaches the output must itself be declared under `privacy.columns`,
  or its definition must say `allow_pii_derivation: true` (then it is not tainted any further);
- a tainted column dropped before the write (`drop:`, left out of `select:`) is fine, but whatever is
  computed from it is tainted too.

A `table` source's SQL is checked conservatively: in every SELECT of it (CTEs and subqueries included),
an output computed from or renaming a protected column must be named as a protected column, unless the
source says `allow_pii_derivation: true`. Names compare case-insensitively, as DuckDB identifiers do.
"""

from __future__ import annotations

from typing import Any

from flows.tables.expressions import parse_tree, walk

_TEMPLATES = {"scalar": "SELECT ({expr}) AS _specd_x", "aggregate": "SELECT ({expr}) AS _specd_x",
              "window": "SELECT {expr} OVER () AS _specd_x"}
ALLOW_HINT = "declare it under privacy.columns too, or mark it allow_pii_derivation: true"


def referenced_columns(node: Any) -> set[str]:
    """Lower-cased names of the columns a parse-tree node refers to (the last part of `t.col`)."""
    return {str(item["column_names"][-1]).lower() for item in walk(node)
            if item.get("class") == "COLUMN_REF" and item.get("column_names")}


def expression_columns(expr: str, role: str = "scalar") -> set[str] | None:
    """Columns an expression refers to, or None when DuckDB cannot parse it (reported elsewhere)."""
    tree = parse_tree(_TEMPLATES[role].format(expr=expr))
    if tree.get("error"):
        return None
    return referenced_columns(tree["statements"][0]["node"]["select_list"])


def sql_derivations(sql: str, protected: set[str]) -> list[str]:
    """Why each output of a SELECT statement that would carry a protected column under another name does so."""
    tree = parse_tree(sql)
    if tree.get("error"):
        return []  # not a parse check: the build reports a query that does not run
    found = []
    for node in walk(tree.get("statements", [])):
        for item in node.get("select_list") or []:
            found += _item_derivations(item, protected, sql)
    return found


def _item_derivations(item: dict[str, Any], protected: set[str], sql: str) -> list[str]:
    if item.get("class") == "STAR":  # `*` passes columns under their own names; REPLACE may not
        return [_where(sql, entry["value"], f"REPLACE ... AS {entry['key']}") for entry in item.get("replace_list") or []
                if str(entry["key"]).lower() not in protected and referenced_columns(entry["value"]) & protected]
    used = referenced_columns(item) & protected
    if not used:
        return []
    bare = item.get("class") == "COLUMN_REF"
    output = item.get("alias") or (item["column_names"][-1] if bare else "")
    if output and str(output).lower() in protected:
        return []  # lands in a protected column: privacy covers it
    name = f"column {output!r}" if output else "an unnamed column"
    verb = "renames" if bare else "is computed from"
    return [_where(sql, item, f"{name} {verb} protected {', '.join(sorted(used))}")]


def _where(sql: str, node: dict[str, Any], what: str) -> str:
    at = node.get("query_location")
    if isinstance(at, int) and 0 <= at < len(sql):
        line = sql.count("\n", 0, at) + 1
        return f"{what} (line {line} of the query: {sql[at:at + 40].splitlines()[0]!r})"
    return what


def pii_derivations(spec: Any) -> list[tuple[tuple, str]]:
    """(field path, message) for every derived column of a table spec that would write PII in plaintext."""
    privacy = getattr(spec, "privacy", None)
    if privacy is None:
        return []
    declared = {name.lower() for name in privacy.columns}
    problems: list[tuple[tuple, str]] = []
    source = spec.source
    if getattr(source, "type", None) == "table" and source.sql and not source.allow_pii_derivation:
        for why in sql_derivations(source.sql, declared):
            problems.append((("source", "sql"), f"{why}: it would be written in plaintext; name it as the "
                                                 "protected column, or set source.allow_pii_derivation: true"))
    features = getattr(spec, "features", None)
    if features is not None:
        problems += _feature_derivations(features, declared)
    return problems


def _feature_derivations(features: Any, declared: set[str]) -> list[tuple[tuple, str]]:
    roots: dict[str, set[str]] = {name: {name} for name in declared}  # tainted column -> protected origins
    derived: dict[str, tuple[tuple, set[str]]] = {}  # tainted derived column -> (field, columns it used)
    for path, name, expr, role, allowed in features.derived_outputs():
        key = name.lower()
        used = expression_columns(expr, role)
        if used is None:
            continue
        used &= set(roots)
        if used and not allowed:
            roots[key] = set().union(*(roots[c] for c in used))
            derived[key] = (("features", *path), used)
        else:  # a replacement computed from clean inputs (or vouched for) is clean
            roots.pop(key, None)
            derived.pop(key, None)
    problems = []
    written = _outputs(features, set(derived))
    for key, (path, used) in derived.items():
        if key in written and key not in declared:
            column = path[-2] if path[-1] == "expr" else path[-1]
            through = sorted(used - declared)
            via = f" (through {', '.join(through)})" if through else ""
            problems.append((path, f"column {column!r} is derived from the protected column(s) "
                                   f"{', '.join(sorted(roots[key]))}{via} and would be written in plaintext: {ALLOW_HINT}"))
    return problems


def _outputs(features: Any, candidates: set[str]) -> set[str]:
    """Which of the candidate derived columns reach the written rows."""
    if features.aggregate is not None:
        kept = {c.lower() for c in features.aggregate.by} | {c.lower() for c in features.aggregate.aggregates}
        candidates &= kept
    candidates -= {c.lower() for c in features.drop}
    if features.select is not None:
        candidates &= {c.lower() for c in features.select}
    return candidates
