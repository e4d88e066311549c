"""Privacy modes on Arrow batches, and the spec models' validation of all transform blocks."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from datetime import date, datetime

import pyarrow as pa
import pytest
from cryptography.exceptions import InvalidTag
from pydantic import ValidationError

from daemon.schema.table_sources import HttpSource, SqlSource
from daemon.schema.table_transforms import CleanSpec, PrivacySpec, QualitySpec
from flows.tables.privacy import PrivacyError, decrypt_column, protect_batch, protected_schema, resolve_keys

KEYS = {"secret:HASH_KEY": b"hash-key-1", "secret:ENC_KEY": b"encryption-key-1"}
BATCH = pa.RecordBatch.from_pydict(
    {
        "email": ["ann@example.org", None, "ann@example.org", "bob@example.org"],
        "phone": ["+49 170 1234567", "12", None, "555-0100"],
        "age": [23, 37, None, 99],
        "income": [12_345.5, 99_999.0, 5.0, None],
        "zip": ["10115", "80331", "20095", None],
        "born": pa.array([date(1990, 5, 17), date(2001, 12, 31), None, date(1985, 1, 1)]),
        "seen": pa.array([datetime(2024, 3, 5, 13, 7)] * 4, pa.timestamp("us")),
        "ssn": ["111-22-3333", "222-33-4444", "333-44-5555", "444-55-6666"],
        "name": ["Ann Smith", "Bob Jones", "Ann Smith", None],
        "kept": [1, 2, 3, 4],
    }
)
SPEC = PrivacySpec.model_validate(
    {
        "columns": {
            "email": {"mode": "hash", "key": "secret:HASH_KEY"},
            "phone": {"mode": "mask", "keep_last": 4},
            "age": {"mode": "generalize", "bucket": 10},
            "income": {"mode": "generalize", "bucket": 1000},
            "zip": {"mode": "generalize", "prefix": 3},
            "born": {"mode": "generalize", "truncate": "month"},
            "seen": {"mode": "generalize", "truncate": "day"},
            "ssn": "drop",
            "name": {"mode": "encrypt", "key": "secret:ENC_KEY"},
        }
    }
)


@pytest.fixture(scope="module")
def protected() -> pa.RecordBatch:
    return protect_batch(BATCH, SPEC, KEYS)


def test_drop_removes_the_column(protected) -> None:
    assert "ssn" not in protected.schema.names
    assert protected.schema == protected_schema(BATCH.schema, SPEC)


def test_hash_is_hmac_sha256_and_joinable(protected) -> None:
    expected = hmac.new(b"hash-key-1", b"ann@example.org", hashlib.sha256).hexdigest()
    values = protected.column("email").to_pylist()
    assert values[0] == values[2] == expected and values[1] is None
    other_key = protect_batch(BATCH, SPEC, {**KEYS, "secret:HASH_KEY": b"another"}).column("email").to_pylist()
    assert other_key[0] != expected


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("phone", ["***********4567", "**", None, "****0100"]),
        ("age", [20, 30, None, 90]),
        ("income", [12_000.0, 99_000.0, 0.0, None]),
        ("zip", ["101", "803", "200", None]),
        ("born", [date(1990, 5, 1), date(2001, 12, 1), None, date(1985, 1, 1)]),
        ("seen", [datetime(2024, 3, 5)] * 4),
        ("kept", [1, 2, 3, 4]),
    ],
)
def test_mask_and_generalise(protected, column: str, expected: list) -> None:
    assert protected.column(column).to_pylist() == expected
    if column == "age":
        assert protected.schema.field("age").type == pa.int64()


def test_mask_keep_first_and_last() -> None:
    spec = PrivacySpec.model_validate(
        {"columns": {"card": {"mode": "mask", "keep_first": 2, "keep_last": 2, "char": "#"}}}
    )
    out = protect_batch(pa.record_batch({"card": ["4111222233334444", "1234", "é12345"]}), spec, {})
    assert out.column("card").to_pylist() == ["41############44", "####", "é1##45"]


def test_encrypt_random_nonce_and_decrypt_only_with_key(protected) -> None:
    cipher = protected.column("name")
    assert cipher.type == pa.binary()
    assert cipher[0].as_py() != cipher[2].as_py()  # same plaintext, different ciphertexts
    assert decrypt_column(cipher, b"encryption-key-1", "name").to_pylist() == [
        "Ann Smith",
        "Bob Jones",
        "Ann Smith",
        None,
    ]
    with pytest.raises(InvalidTag):
        decrypt_column(cipher, b"wrong-key", "name")
    with pytest.raises(InvalidTag):  # bound to its column: moving it to another column does not decrypt
        decrypt_column(cipher, b"encryption-key-1", "other")


def test_missing_column_or_key_is_an_error() -> None:
    spec = PrivacySpec.model_validate({"columns": {"e_mail": "drop"}})
    with pytest.raises(PrivacyError, match="privacy.columns.e_mail: no such column"):
        protect_batch(BATCH, spec, {})
    with pytest.raises(PrivacyError, match="secret HASH_KEY was not provided"):
        protect_batch(BATCH, SPEC, {"secret:ENC_KEY": b"k"})
    with pytest.raises(PrivacyError, match="not numeric"):
        protect_batch(BATCH, PrivacySpec.model_validate({"columns": {"zip": {"mode": "generalize", "bucket": 5}}}), {})


def test_resolve_keys_reads_each_secret_once() -> None:
    asked = []
    keys = resolve_keys(SPEC, lambda ref: asked.append(ref) or f"value-of-{ref}")
    assert keys == {"secret:ENC_KEY": b"value-of-secret:ENC_KEY", "secret:HASH_KEY": b"value-of-secret:HASH_KEY"}
    assert sorted(asked) == ["secret:ENC_KEY", "secret:HASH_KEY"]


# ---------------------------------------------------------------- spec validation
@pytest.mark.parametrize(
    ("model", "data", "loc", "message"),
    [
        (
            PrivacySpec,
            {"columns": {"e": {"mode": "hash", "key": "plaintext-key"}}},
            ("columns", "e", "hash", "key"),
            "secret reference",
        ),
        (PrivacySpec, {"columns": {"e": {"mode": "generalize"}}}, ("columns", "e", "generalize"), "exactly one"),
        (PrivacySpec, {"columns": {"e": "scramble"}}, ("columns", "e"), "does not match any of the expected tags"),
        (CleanSpec, {"columns": {"a": {"nulls": "constant"}}}, ("columns", "a", "nulls"), "needs a value"),
        (
            CleanSpec,
            {"columns": {"a": {"nulls": {"strategy": "forward_fill"}}}},
            ("columns", "a", "nulls"),
            "needs order_by",
        ),
        (CleanSpec, {"columns": {"a": {"cast": "money"}}}, ("columns", "a", "cast"), "unknown type"),
        (CleanSpec, {"columns": {"a": {"on_cast_error": "quarantine"}}}, ("columns", "a"), "needs cast"),
        (CleanSpec, {"columns": {"a": {"clip": {"lower": 5, "upper": 1}}}}, ("columns", "a", "clip"), "above upper"),
        (CleanSpec, {"columns": {"_specd_x": {}}}, ("columns", "_specd_x", "[key]"), "reserved prefix"),
        (CleanSpec, {"dedupe": {"keys": []}}, ("dedupe", "keys"), "at least 1"),
        (QualitySpec, {"freshness": {"column": "ts", "max_age": "soon"}}, ("freshness", "max_age"), "invalid duration"),
        (QualitySpec, {"columns": {"a": {"regex": "("}}}, ("columns", "a", "regex"), "invalid regular expression"),
        (QualitySpec, {"action": "explode"}, ("action",), "'fail', 'warn' or 'quarantine'"),
        (
            SqlSource,
            {"type": "sql", "url": "postgresql://u:pw@h/db", "query": "select 1"},
            ("url",),
            "use ${secret:NAME}",
        ),
        (
            SqlSource,
            {"type": "sql", "url": "sqlite:////etc/db", "query": "select 1"},
            ("url",),
            "relative to the data root",
        ),
        (
            SqlSource,
            {"type": "sql", "url": "sqlite:///../x.db", "query": "select 1"},
            ("url",),
            "escapes the data root",
        ),
        (SqlSource, {"type": "sql", "url": "secret:DB", "query": "delete from t"}, ("query",), "one SELECT"),
        (
            SqlSource,
            {"type": "sql", "url": "secret:DB", "query": "select 1; drop table t"},
            ("query",),
            "single statement",
        ),
        (HttpSource, {"type": "http", "url": "ftp://x"}, ("url",), "http(s)://"),
        (
            HttpSource,
            {"type": "http", "url": "http://x", "auth": {"value": "Bearer abc"}},
            ("auth", "value"),
            "secret reference",
        ),
        (
            HttpSource,
            {"type": "http", "url": "http://x", "pagination": {"style": "scroll"}},
            ("pagination", "style"),
            "'none'",
        ),
    ],
)
def test_spec_errors_point_at_the_field(model, data: dict, loc: tuple, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    errors = info.value.errors()
    assert any(tuple(e["loc"]) == loc and message in e["msg"] for e in errors), errors


def test_valid_sources_normalise() -> None:
    sql = SqlSource.model_validate({"type": "sql", "url": "sqlite:///data/./shop.db", "query": "SELECT * FROM t;"})
    assert (sql.url, sql.query) == ("sqlite:///data/shop.db", "SELECT * FROM t")
    assert SqlSource.model_validate(
        {"type": "sql", "url": "secret:DB_URL", "query": "with a as (select 1) select * from a"}
    )
    http = HttpSource.model_validate(
        {"type": "http", "url": "https://api.example.org/v1/x", "auth": {"value": "secret:TOKEN"}}
    )
    assert http.pagination.style == "none" and http.auth.header == "Authorization"


def test_spec_modules_and_source_modules_import_light() -> None:
    """validate/plan import the spec models; the readers are imported by the build. None may pull in
    torch, bentoml or prefect; the spec modules not even duckdb or pyarrow."""
    code = (
        "import sys, json\n"
        "import daemon.schema.table_transforms, daemon.schema.table_sources\n"
        "spec_level = sorted(m for m in ('torch', 'bentoml', 'prefect', 'duckdb', 'pyarrow', 'sqlalchemy', 'httpx') if m in sys.modules)\n"
        "import flows.tables.sources.sql_db, flows.tables.sources.http_api, flows.tables.clean, flows.tables.features\n"
        "import flows.tables.quality, flows.tables.privacy, flows.tables.expressions\n"
        "build_level = sorted(m for m in ('torch', 'bentoml', 'prefect') if m in sys.modules)\n"
        "print(json.dumps([spec_level, build_level]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [[], []]
