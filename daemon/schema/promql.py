"""PromQL checks at plan time: an invalid query in a dashboard or alert is a spec error with file:line.

Why a real parser: a regex catches unbalanced brackets but not `rate(x)` (a vector where a range is
needed) or an unknown function, which Grafana would only reveal as a red panel in production. The
`promql-parser` package (Rust, the Prometheus grammar and type checks) parses in microseconds and imports
in a few milliseconds, so `validate` and `plan` stay light.

Grafana's global variables (`$__rate_interval`, `$__interval`, `$__range`) are not PromQL; they are
replaced by a representative duration before parsing, exactly as `substitute_grafana_variables` does for
the end-to-end test that runs every query against a real Prometheus.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any

from pydantic import AfterValidator

GRAFANA_DURATION_VARIABLES = ("$__rate_interval", "$__interval", "$__range")
_VARIABLE = re.compile(r"\$(?:\{(__[a-z_]+)\}|(__[a-z_]+))")
_DURATION_VARIABLES = {"__rate_interval", "__interval", "__range"}
_OTHER_VARIABLES = {"__range_s": "300", "__range_ms": "300000", "__interval_ms": "60000"}


class PromQLError(ValueError):
    """An expression that Prometheus would refuse."""


def _parser() -> Any:
    try:
        import promql_parser
    except ImportError as exc:  # pragma: no cover - the dependency is declared; this names it if missing
        raise PromQLError("PromQL validation needs the 'promql-parser' package (pip install promql-parser)") from exc
    return promql_parser


def substitute_grafana_variables(expr: str, duration: str = "5m") -> str:
    """Replace Grafana's global variables by a duration (or its seconds) so plain PromQL remains."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in _DURATION_VARIABLES:
            return duration
        if name in _OTHER_VARIABLES:
            return _OTHER_VARIABLES[name]
        raise PromQLError(f"unsupported Grafana variable ${name}; allowed: {', '.join(GRAFANA_DURATION_VARIABLES)}")

    return _VARIABLE.sub(replace, expr)


def _parse_text(text: str) -> Any:
    """Parse PromQL text (variables already substituted); PromQLError carries only the reason."""
    if not text:
        raise PromQLError("empty PromQL expression")
    if "$" in text:
        raise PromQLError("dashboard template variables other than Grafana's $__ globals are not supported")
    try:
        return _parser().parse(text)
    except ValueError as exc:
        raise PromQLError(str(exc)) from None


def parse(expr: str) -> Any:
    """Parse one expression (Grafana variables substituted); raise PromQLError naming the expression."""
    try:
        return _parse_text(substitute_grafana_variables(expr.strip()))
    except PromQLError as exc:
        raise PromQLError(f"invalid PromQL {expr!r}: {exc}") from None


# The value of an exact (`="..."`) or negated (`!="..."`) label matcher never decides whether a query is
# valid, so generated queries that differ only in resource names share one parse (a "shape" cache):
# compose derives ~20 queries per resource on every plan, and one parse costs ~0.2 ms.
# Matched from the quote (a look-behind for the `=` of `=` or `!=`), so the replacement is a plain string
# that `re` substitutes in C: the same replacements as `(!?=)"…"` → `\1"_"`, without a Python call per match.
_EXACT_MATCHER_VALUE = re.compile(r'(?<==)"(?:[^"\\]|\\.)*"')


@lru_cache(maxsize=8192)
def _shape_problem(shape: str) -> str:
    """'' when the query shape is a valid instant query, else the reason it is not."""
    try:
        node = _parse_text(substitute_grafana_variables(shape))
    except PromQLError as exc:
        return str(exc)
    parser = _parser()
    if isinstance(node, parser.MatrixSelector | parser.SubqueryExpr):
        return "a range vector; wrap it in a function such as rate() or max_over_time()"
    return ""


def check_instant_query(expr: str) -> str:
    """A panel or alert query: must parse and evaluate to an instant vector or scalar (not a range)."""
    problem = _shape_problem(_EXACT_MATCHER_VALUE.sub('"_"', expr.strip()))
    if problem:
        raise PromQLError(f"invalid PromQL {expr!r}: {problem}")
    return expr.strip()


def metric_names(expr: str) -> list[str]:
    """Every metric name the expression selects (for contract checks of generated queries)."""
    parser = _parser()
    names: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, parser.VectorSelector) and node.name:
            names.append(node.name)
        return True

    parser.walk(parse(expr), visit)
    return names


def signal_of(expr: str) -> str:
    """The left side of a threshold comparison (`signal > 0.25` → `signal`), else the expression itself.

    An alert's full expression returns nothing while all is well; its signal must still return data,
    which is what the end-to-end test asserts.
    """
    node = parse(expr)
    parser = _parser()
    comparisons = {">", "<", ">=", "<=", "==", "!="}
    set_operations = {"and", "or", "unless"}  # multi-window alerts: the signal of the first threshold clause

    def unwrap(n: Any) -> Any:
        while isinstance(n, parser.ParenExpr):
            n = n.expr
        return n

    def is_threshold(n: Any) -> bool:
        n = unwrap(n)
        if isinstance(n, parser.BinaryExpr) and str(n.op) in set_operations:
            return is_threshold(n.lhs)
        return isinstance(n, parser.BinaryExpr) and str(n.op) in comparisons and isinstance(n.rhs, parser.NumberLiteral)

    while True:
        if isinstance(node, parser.ParenExpr):
            node = node.expr
        elif isinstance(node, parser.BinaryExpr) and str(node.op) in set_operations and is_threshold(node.lhs):
            node = node.lhs
        elif isinstance(node, parser.BinaryExpr) and str(node.op) in comparisons and isinstance(node.rhs, parser.NumberLiteral):
            node = node.lhs
        else:
            return str(node)


def _validated(expr: str) -> str:
    return check_instant_query(expr)


PromQL = Annotated[str, AfterValidator(_validated)]
