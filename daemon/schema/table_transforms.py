"""What a table does to its rows between source and write: clean, derive features, check, protect.

These models are the YAML vocabulary of a data engineer (`clean:`, `features:`, `quality:`, `privacy:`
on a table spec). They stay pure pydantic so `validate` and `plan` load them cheaply; the SQL they turn
into lives in `flows/tables/{clean,features,quality,privacy}.py`.

SQL expressions come from specs and are pasted into larger statements, so every expression is checked
here, lexically, before anything runs: one expression, balanced parentheses, no `;`, no comments, no
escape or dollar-quoted strings (the constructs that let text break out of its slot). The flows modules
re-check each one with DuckDB's own parser (`flows.tables.features.check_expressions`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, Tag, model_validator

from daemon.schema.base import Ref, ResourceName, SecretRef, SpecModel


# ---------------------------------------------------------------- shared field types
def _column_name(value: str) -> str:
    if not value or len(value) > 255:
        raise ValueError("column names must have 1 to 255 characters")
    if any(ord(ch) < 32 for ch in value):
        raise ValueError(f"column name {value!r} contains control characters")
    if value.startswith("_specd_"):
        raise ValueError(f"column name {value!r} uses the reserved prefix '_specd_'")
    return value


ColumnName = Annotated[str, AfterValidator(_column_name)]


def check_expression_text(text: str) -> str | None:
    """Why `text` cannot be pasted into a statement as one SQL expression, or None when it can."""
    if not text.strip():
        return "the expression is empty"
    depth, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            if (
                ch == "'"
                and i > 0
                and text[i - 1] in "eE"
                and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
            ):
                return "escape strings (E'...') are not allowed; use a plain '...' literal"
            end = i + 1
            while True:
                end = text.find(ch, end)
                if end < 0:
                    return f"unterminated {'string' if ch == chr(39) else 'quoted identifier'} starting at character {i + 1}"
                if end + 1 < n and text[end + 1] == ch:  # doubled quote is an escaped quote
                    end += 2
                    continue
                break
            i = end + 1
            continue
        if ch == ";":
            return "';' is not allowed: one expression, not a statement"
        if text.startswith("--", i) or text.startswith("/*", i):
            return "SQL comments are not allowed in expressions"
        if ch == "$":
            return "'$' (parameters, dollar-quoted strings) is not allowed in expressions"
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return f"unbalanced ')' at character {i + 1}"
        i += 1
    if depth:
        return "unbalanced '(': missing ')'"
    return None


def _expression(value: str) -> str:
    problem = check_expression_text(value)
    if problem:
        raise ValueError(f"invalid SQL expression {value!r}: {problem}")
    return value.strip()


SqlExpression = Annotated[str, AfterValidator(_expression)]

# Arrow-style names (as in a table's `schema.columns`) and DuckDB names, both accepted for casts.
_TYPE_ALIASES = {
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "uint16": "USMALLINT",
    "uint32": "UINTEGER",
    "uint64": "UBIGINT",
    "float32": "FLOAT",
    "float": "FLOAT",
    "float64": "DOUBLE",
    "double": "DOUBLE",
    "string": "VARCHAR",
    "utf8": "VARCHAR",
    "large_string": "VARCHAR",
    "str": "VARCHAR",
    "varchar": "VARCHAR",
    "bool": "BOOLEAN",
    "boolean": "BOOLEAN",
    "date32": "DATE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamp[us]": "TIMESTAMP",
    "timestamp[ms]": "TIMESTAMP_MS",
    "timestamp[s]": "TIMESTAMP_S",
    "timestamp[ns]": "TIMESTAMP_NS",
    "timestamptz": "TIMESTAMPTZ",
    "timestamp[us, tz=utc]": "TIMESTAMPTZ",
    "time": "TIME",
    "binary": "BLOB",
    "blob": "BLOB",
    "tinyint": "TINYINT",
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "real": "FLOAT",
    "hugeint": "HUGEINT",
    "interval": "INTERVAL",
    "uuid": "UUID",
}
_DECIMAL = re.compile(r"^decimal(?:128)?\(\s*(\d{1,2})\s*,\s*(\d{1,2})\s*\)$", re.IGNORECASE)


def duckdb_type(name: str) -> str:
    """The DuckDB type for a cast target given as an Arrow or DuckDB type name; ValueError if unknown."""
    key = name.strip().lower()
    if key in _TYPE_ALIASES:
        return _TYPE_ALIASES[key]
    match = _DECIMAL.match(key)
    if match and 0 <= int(match.group(2)) <= int(match.group(1)) <= 38 and int(match.group(1)) > 0:
        return f"DECIMAL({match.group(1)},{match.group(2)})"
    raise ValueError(
        f"unknown type {name!r} (use int64, float64, string, bool, date32, timestamp[us], decimal(p,s), ...)"
    )


def _type_name(value: str) -> str:
    duckdb_type(value)
    return value


TypeName = Annotated[str, AfterValidator(_type_name)]
Scalar = str | int | float | bool


def _strategy_shorthand(field: str):
    def convert(value: Any) -> Any:
        return {field: value} if isinstance(value, str) else value

    return BeforeValidator(convert)


# ---------------------------------------------------------------- clean
class NullPolicy(SpecModel):
    """What to do with NULLs in one column (`nulls: median` is short for `nulls: {strategy: median}`)."""

    strategy: Literal["keep", "drop", "constant", "mean", "median", "mode", "forward_fill"]
    value: Scalar | None = None  # for `constant`
    order_by: ColumnName | None = None  # for `forward_fill`: the column that orders the rows
    partition_by: list[ColumnName] = Field(default_factory=list)  # for `forward_fill`: fill within groups

    @model_validator(mode="after")
    def _fields_fit_strategy(self) -> NullPolicy:
        if self.strategy == "constant" and self.value is None:
            raise ValueError("strategy 'constant' needs a value")
        if self.strategy != "constant" and self.value is not None:
            raise ValueError(f"value is only used by strategy 'constant', not {self.strategy!r}")
        if self.strategy == "forward_fill" and not self.order_by:
            raise ValueError("strategy 'forward_fill' needs order_by (the column that orders the rows)")
        if self.strategy != "forward_fill" and (self.order_by or self.partition_by):
            raise ValueError("order_by/partition_by are only used by strategy 'forward_fill'")
        return self


class ClipSpec(SpecModel):
    """Clip outliers to fixed bounds or to quantiles of the column (computed over the build's rows)."""

    lower: float | None = None
    upper: float | None = None
    lower_quantile: float | None = Field(default=None, ge=0, le=1)
    upper_quantile: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_bound_per_side(self) -> ClipSpec:
        if self.lower is not None and self.lower_quantile is not None:
            raise ValueError("give lower or lower_quantile, not both")
        if self.upper is not None and self.upper_quantile is not None:
            raise ValueError("give upper or upper_quantile, not both")
        if all(v is None for v in (self.lower, self.upper, self.lower_quantile, self.upper_quantile)):
            raise ValueError("clip needs at least one of lower, upper, lower_quantile, upper_quantile")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower {self.lower} is above upper {self.upper}")
        if (
            self.lower_quantile is not None
            and self.upper_quantile is not None
            and self.lower_quantile > self.upper_quantile
        ):
            raise ValueError("lower_quantile is above upper_quantile")
        return self


class NormalizeSpec(SpecModel):
    """String normalisation, applied before casting (so ' 12 ' casts to 12)."""

    trim: bool = True
    case: Literal["lower", "upper"] | None = None
    collapse_spaces: bool = False  # runs of whitespace become one space
    unicode_nfc: bool = False
    empty_as_null: bool = False  # '' (after trimming) becomes NULL


class ColumnCleaning(SpecModel):
    """Cleaning of one column, in this order: normalize → cast → nulls → clip."""

    normalize: NormalizeSpec | None = None
    cast: TypeName | None = None  # bad values become NULL (then the null policy applies) or quarantine
    on_cast_error: Literal["null", "quarantine"] = "null"
    nulls: Annotated[NullPolicy, _strategy_shorthand("strategy")] | None = None
    clip: ClipSpec | None = None

    @model_validator(mode="after")
    def _quarantine_needs_cast(self) -> ColumnCleaning:
        if self.on_cast_error == "quarantine" and self.cast is None:
            raise ValueError("on_cast_error 'quarantine' needs cast")
        return self


class DedupeSpec(SpecModel):
    keys: list[ColumnName] = Field(min_length=1)
    keep_latest_by: ColumnName | None = None  # keep the row with the largest value; None: an arbitrary one


class CleanSpec(SpecModel):
    """Row cleaning: `where` filter, per-column rules, then deduplication."""

    where: SqlExpression | None = None  # keep rows where this is true; the rest count as filtered
    columns: dict[ColumnName, ColumnCleaning] = Field(default_factory=dict)
    dedupe: DedupeSpec | None = None


# ---------------------------------------------------------------- features
_FRAME = re.compile(
    r"^(ROWS|RANGE|GROUPS)\s+BETWEEN\s+(?P<a>UNBOUNDED\s+PRECEDING|CURRENT\s+ROW|(\d+|INTERVAL\s+'[0-9a-z ]+')\s+(PRECEDING|FOLLOWING))"
    r"\s+AND\s+(?P<b>UNBOUNDED\s+FOLLOWING|CURRENT\s+ROW|(\d+|INTERVAL\s+'[0-9a-z ]+')\s+(PRECEDING|FOLLOWING))$",
    re.IGNORECASE,
)


def _frame(value: str) -> str:
    text = " ".join(value.split())
    if not _FRAME.match(text):
        raise ValueError(
            f"invalid window frame {value!r}: expected e.g. 'ROWS BETWEEN 6 PRECEDING AND CURRENT ROW' "
            "or \"RANGE BETWEEN INTERVAL '7 days' PRECEDING AND CURRENT ROW\""
        )
    return text


class JoinSpec(SpecModel):
    """Join another table on same-named key columns; `table` becomes a dependency in the graph."""

    table: ResourceName
    on: list[ColumnName] = Field(min_length=1)
    how: Literal["left", "inner"] = "left"
    columns: list[ColumnName] = Field(default_factory=list)  # columns to bring in; empty: all but the keys
    prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_]*$")  # prepended to the brought-in column names


class DerivedColumn(SpecModel):
    """A derived column in its long form: the expression plus an explicit PII decision.

    A derived column computed from a column declared under `privacy.columns` would be written in
    plaintext (privacy protects columns by name), so validation rejects it unless the derived column is
    itself declared there or marked `allow_pii_derivation: true` (e.g. an e-mail's domain, judged not
    to identify anyone)."""

    expr: SqlExpression
    allow_pii_derivation: bool = False


# `name: expr` or `name: {expr: ..., allow_pii_derivation: true}` (one error message, not one per form)
ColumnExpression = Annotated[
    Annotated[SqlExpression, Tag("str[expr]")] | Annotated[DerivedColumn, Tag("dict[DerivedColumn]")],
    Discriminator(lambda value: "dict[DerivedColumn]" if isinstance(value, dict | DerivedColumn) else "str[expr]"),
]


def _expr(value: str | DerivedColumn) -> str:
    return value.expr if isinstance(value, DerivedColumn) else value


def _pii_allowed(value: str | DerivedColumn) -> bool:
    return isinstance(value, DerivedColumn) and value.allow_pii_derivation


class WindowSpec(SpecModel):
    expr: SqlExpression  # an aggregate or window function: sum(amount), lag(amount), row_number()
    partition_by: list[ColumnName] = Field(default_factory=list)
    order_by: list[ColumnName] = Field(default_factory=list)
    descending: bool = False
    frame: Annotated[str, AfterValidator(_frame)] | None = None
    allow_pii_derivation: bool = False  # see DerivedColumn


class AggregateSpec(SpecModel):
    """Group-by aggregation; the table's rows become one per group (the warehouse layer)."""

    by: list[ColumnName] = Field(default_factory=list)  # empty: one row for the whole table
    aggregates: dict[ColumnName, ColumnExpression] = Field(min_length=1)
    having: SqlExpression | None = None

    def aggregate_expressions(self) -> dict[str, str]:
        return {name: _expr(value) for name, value in self.aggregates.items()}


class FeaturesSpec(SpecModel):
    """Deterministic feature engineering, applied in this order: joins → columns → windows → aggregate →
    drop/select. Derived `columns` are evaluated in order and may use the ones before them."""

    joins: list[JoinSpec] = Field(default_factory=list)
    columns: dict[ColumnName, ColumnExpression] = Field(default_factory=dict)
    windows: dict[ColumnName, WindowSpec] = Field(default_factory=dict)
    aggregate: AggregateSpec | None = None
    drop: list[ColumnName] = Field(default_factory=list)
    select: list[ColumnName] | None = None  # final columns, in this order

    def referenced_tables(self) -> list[str]:
        return [join.table for join in self.joins]

    def references(self, field_prefix: tuple = ("features",)) -> list[Ref]:
        return [Ref("table", join.table, (*field_prefix, "joins", i, "table")) for i, join in enumerate(self.joins)]

    def column_expressions(self) -> dict[str, str]:
        """Derived column name -> SQL expression, in declaration order (short and long forms alike)."""
        return {name: _expr(value) for name, value in self.columns.items()}

    def derived_outputs(self) -> list[tuple[tuple, str, str, str, bool]]:
        """(field path, column, expression, role, allow_pii_derivation) of every column a feature step
        computes, in evaluation order: columns, windows, then aggregates."""
        found = [(("columns", k), k, _expr(v), "scalar", _pii_allowed(v)) for k, v in self.columns.items()]
        found += [(("windows", k, "expr"), k, w.expr, "window", w.allow_pii_derivation) for k, w in self.windows.items()]
        if self.aggregate:
            found += [(("aggregate", "aggregates", k), k, _expr(v), "aggregate", _pii_allowed(v))
                      for k, v in self.aggregate.aggregates.items()]
        return found

    def expressions(self) -> list[tuple[tuple, str, str]]:
        """(field path, expression, role) for every SQL expression, for the DuckDB parser check.
        role: 'scalar', 'window' (aggregate or window function) or 'aggregate'."""
        found: list[tuple[tuple, str, str]] = [(path, expr, role) for path, _, expr, role, _ in self.derived_outputs()]
        if self.aggregate:
            if self.aggregate.having:
                found.append((("aggregate", "having"), self.aggregate.having, "aggregate"))
        return found


# ---------------------------------------------------------------- quality
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit s, m, h, d or w (e.g. '24h')")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _duration(value: str) -> str:
    duration_seconds(value)
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


class ColumnChecks(SpecModel):
    """Row-level checks of one column. NULL passes every check except not_null."""

    not_null: bool = False
    unique: bool = False  # within the rows of this build; every row of a duplicated value fails
    min: int | float | str | None = None  # strings compare as the column's type (dates: '2020-01-01')
    max: int | float | str | None = None
    allowed: list[Scalar] | None = Field(default=None, min_length=1)
    regex: Annotated[str, AfterValidator(_regex)] | None = None  # searched; anchor with ^...$ for a full match


class RowCountSpec(SpecModel):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class FreshnessSpec(SpecModel):
    column: ColumnName  # a date or timestamp column
    max_age: Annotated[str, AfterValidator(_duration)]  # the newest value must be at most this old: '24h'

    @property
    def max_age_seconds(self) -> float:
        return duration_seconds(self.max_age)


CheckName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,62}$")]


class QualitySpec(SpecModel):
    """Data quality checks and what a failure does: `fail` the build (nothing written), `warn` (written,
    reported) or `quarantine` (failing rows go to `<table>__quarantine` with the reason)."""

    action: Literal["fail", "warn", "quarantine"] = "fail"
    columns: dict[ColumnName, ColumnChecks] = Field(default_factory=dict)
    rules: dict[CheckName, SqlExpression] = Field(default_factory=dict)  # a row passes unless the predicate is false
    row_count: RowCountSpec | None = None
    freshness: FreshnessSpec | None = None

    def check_names(self) -> list[str]:
        """Names used in quarantine reasons and in `specd_table_quality_failures_total{check}`."""
        names = []
        for column, checks in self.columns.items():
            for check in ("not_null", "unique"):
                if getattr(checks, check):
                    names.append(f"{column}.{check}")
            if checks.min is not None or checks.max is not None:
                names.append(f"{column}.range")
            if checks.allowed is not None:
                names.append(f"{column}.allowed")
            if checks.regex is not None:
                names.append(f"{column}.regex")
        names += [f"rule.{name}" for name in self.rules]
        if self.row_count:
            names.append("table.row_count")
        if self.freshness:
            names.append("table.freshness")
        return names


# ---------------------------------------------------------------- privacy
class DropRule(SpecModel):
    mode: Literal["drop"]


class HashRule(SpecModel):
    """Keyed hash (HMAC-SHA256, hex): equal inputs stay joinable, the key stays out of Git."""

    mode: Literal["hash"]
    key: SecretRef


class MaskRule(SpecModel):
    mode: Literal["mask"]
    keep_first: int = Field(default=0, ge=0)
    keep_last: int = Field(default=4, ge=0)
    char: str = Field(default="*", min_length=1, max_length=1)


class GeneralizeRule(SpecModel):
    """Coarsen a value: numeric `bucket` width, string `prefix` length, or date/time `truncate` unit."""

    mode: Literal["generalize"]
    bucket: float | None = Field(default=None, gt=0)
    prefix: int | None = Field(default=None, ge=0)
    truncate: Literal["year", "quarter", "month", "week", "day", "hour"] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> GeneralizeRule:
        given = [n for n in ("bucket", "prefix", "truncate") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("generalize needs exactly one of bucket, prefix, truncate")
        return self


class EncryptRule(SpecModel):
    """AES-256-GCM with a random nonce per value; the stored value is nonce || ciphertext || tag."""

    mode: Literal["encrypt"]
    key: SecretRef


PrivacyRule = Annotated[
    DropRule | HashRule | MaskRule | GeneralizeRule | EncryptRule,
    Field(discriminator="mode"),
    _strategy_shorthand("mode"),
]


class PrivacySpec(SpecModel):
    """PII columns and how each is protected before any write (table and quarantine alike)."""

    columns: dict[ColumnName, PrivacyRule] = Field(min_length=1)

    def secret_refs(self) -> list[str]:
        return sorted({rule.key for rule in self.columns.values() if isinstance(rule, HashRule | EncryptRule)})
