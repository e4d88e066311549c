"""The feature stage as DuckDB SQL: joins, derived columns, windows, group-by aggregates, projection.

Tables hold deterministic transforms only (fitted scalers and encoders belong to a model's
preprocessing), so every feature is one SQL expression the pipeline runs inside DuckDB. Steps, in order:

1. `joins`: each joined table is an upstream resource (`FeaturesSpec.references()` puts it in the
   graph); the pipeline passes `inputs`: table name -> the DuckDB view holding it;
2. `columns`: one layer per derived column, so later columns can use earlier ones and a derived column
   may replace an input column of the same name;
3. `windows`: `<function call> OVER (PARTITION BY .. ORDER BY .. <frame>)`;
4. `aggregate`: GROUP BY the keys (+ HAVING);
5. `drop`, then `select` (final columns in order).

Expressions are wrapped in parentheses (a balanced expression cannot leave them) after the spec's
lexical check; `flows.tables.expressions.check_table_expressions` runs DuckDB's parser over them at
validate time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from daemon.schema.table_transforms import FeaturesSpec, JoinSpec, WindowSpec
from flows.tables.expressions import REASON_COLUMN, ident, literal


class FeaturesError(ValueError):
    """The features spec does not fit its inputs (a join table with no view). Names the field."""


def _replace_or_add(source: str, name: str, expr: str) -> str:
    """SELECT every column of `source` except `name`, then `expr AS name` (a replacement moves to the end)."""
    return f"SELECT COLUMNS(lambda c: c <> {literal(name)}), {expr} AS {ident(name)} FROM ({source})"


def _join(source: str, index: int, join: JoinSpec, view: str) -> str:
    """LEFT/INNER JOIN on same-named keys; the right side is projected first (keys renamed away, columns
    chosen and prefixed) so the result has each key once and no ambiguous names."""
    left, right = f"_specd_l{index}", f"_specd_r{index}"
    key_aliases = [f"_specd_k{index}_{i}" for i in range(len(join.on))]
    renamed_keys = ", ".join(f"{ident(k)} AS {alias}" for k, alias in zip(join.on, key_aliases, strict=True))
    if join.columns:
        brought = ", ".join(f"{ident(c)} AS {ident(join.prefix + c)}" for c in join.columns)
    else:
        excluded = ", ".join(literal(k) for k in join.on)
        rename = f" AS {literal(join.prefix + chr(92) + '0')}" if join.prefix else ""
        brought = f"COLUMNS(lambda c: c NOT IN ({excluded})){rename}"
    right_side = f"(SELECT {renamed_keys}, {brought} FROM {view})"
    condition = " AND ".join(
        f"{left}.{ident(k)} IS NOT DISTINCT FROM {right}.{alias}" for k, alias in zip(join.on, key_aliases, strict=True)
    )
    how = "LEFT JOIN" if join.how == "left" else "JOIN"
    return (
        f"SELECT {left}.*, {right}.* EXCLUDE ({', '.join(key_aliases)}) "
        f"FROM ({source}) AS {left} {how} {right_side} AS {right} ON {condition}"
    )


def _window(name: str, window: WindowSpec) -> str:
    over = []
    if window.partition_by:
        over.append("PARTITION BY " + ", ".join(ident(c) for c in window.partition_by))
    if window.order_by:
        direction = " DESC" if window.descending else ""
        over.append("ORDER BY " + ", ".join(ident(c) + direction for c in window.order_by))
    if window.frame:
        over.append(window.frame)
    return f"{window.expr} OVER ({' '.join(over)})"


def features_sql(
    input_view: str,
    spec: FeaturesSpec,
    inputs: Mapping[str, str],
    *,
    carries_reason: bool = False,
    carried: Sequence[str] = (),
) -> str:
    """The feature SELECT over `input_view`; `inputs` maps each joined table's name to its view.

    `carries_reason`: the input has the clean stage's `_specd_quarantine_reason` column; it is kept
    through every step (an aggregate would group quarantined rows away, so that combination is refused).
    `carried`: more pipeline bookkeeping columns (`_specd_*`) kept through every step the same way.
    """
    if carried and spec.aggregate is not None:
        raise FeaturesError(f"features.aggregate: cannot carry the per-row columns {list(carried)} through an aggregate")
    if carries_reason and spec.aggregate is not None:
        raise FeaturesError(
            "features.aggregate: cannot aggregate rows that cleaning sends to quarantine "
            "(on_cast_error: quarantine); quarantine in the upstream table or cast errors to null"
        )
    sql = f"SELECT * FROM {input_view}"
    for index, join in enumerate(spec.joins):
        view = inputs.get(join.table)
        if view is None:
            raise FeaturesError(f"features.joins[{index}].table: no input view for table {join.table!r}")
        sql = _join(sql, index, join, view)
    for name, expr in spec.column_expressions().items():
        sql = _replace_or_add(sql, name, f"({expr})")
    for name, window in spec.windows.items():
        sql = _replace_or_add(sql, name, _window(name, window))
    if spec.aggregate is not None:
        keys = [ident(k) for k in spec.aggregate.by]
        items = keys + [f"({expr}) AS {ident(name)}" for name, expr in spec.aggregate.aggregate_expressions().items()]
        sql = f"SELECT {', '.join(items)} FROM ({sql}) AS _specd_g"
        if keys:
            sql += f" GROUP BY {', '.join(keys)}"
        if spec.aggregate.having:
            sql += f" HAVING ({spec.aggregate.having})"
    if spec.drop:
        sql = f"SELECT * EXCLUDE ({', '.join(ident(c) for c in spec.drop)}) FROM ({sql})"
    if spec.select is not None:
        final = [ident(c) for c in spec.select] + [ident(c) for c in carried]
        final += [ident(REASON_COLUMN)] if carries_reason else []
        sql = f"SELECT {', '.join(final)} FROM ({sql})"
    return sql
