"""The SQL source against a real PostgreSQL (and the embedded SQLite default): streaming in chunks,
incremental reads past a watermark in cursor order, and clear errors naming the table."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from daemon.schema.table_sources import SqlSource
from flows.tables.sources import SourceContext, SourceError, read_source

pytestmark = pytest.mark.integration
ROWS = 23
START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def orders(postgres):
    with postgres.connect() as connection:
        connection.execute("DROP TABLE IF EXISTS orders")
        connection.execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(10,2), "
            "quantity integer, paid boolean, updated_at timestamptz NOT NULL, note text)"
        )
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (i, f"customer-{i % 4}", Decimal(f"{i}.25"), i * 2, i % 2 == 0, START + timedelta(hours=i), None)
                    for i in range(1, ROWS + 1)
                ],
            )
    return postgres


def context(tmp_path: Path, secrets: dict[str, str], **kwargs) -> SourceContext:
    def resolve(ref: str) -> str:
        name = ref.removeprefix("secret:")
        if name not in secrets:
            raise KeyError(f"secret {name} is not set")
        return secrets[name]

    return SourceContext(table="bronze_orders", data_root=tmp_path, repo_dir=tmp_path, resolve_secret=resolve, **kwargs)


def source(**kwargs) -> SqlSource:
    return SqlSource.model_validate(
        {"type": "sql", "url": "${secret:ORDERS_DB}".replace("${", "").replace("}", ""), **kwargs}
    )


def test_streams_all_rows_in_chunks_with_types(orders, tmp_path) -> None:
    reader = read_source(
        source(query="SELECT * FROM orders ORDER BY id", chunk_rows=5), context(tmp_path, {"ORDERS_DB": orders.url()})
    )
    batches = list(reader)
    assert [b.num_rows for b in batches] == [5, 5, 5, 5, 3]
    table = pa.Table.from_batches(batches)
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("quantity").type == pa.int32()
    assert table.schema.field("amount").type == pa.float64()
    assert table.schema.field("paid").type == pa.bool_()
    assert table.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("note").type == pa.string()  # all NULL: typed from the PostgreSQL column
    assert table.column("amount").to_pylist()[:2] == [1.25, 2.25]
    assert table.num_rows == ROWS


@pytest.mark.parametrize(
    ("cursor", "watermark", "first_id"),
    [
        ("updated_at", START + timedelta(hours=20), 21),
        ("updated_at", (START + timedelta(hours=17)).isoformat(), 18),  # as text, the way a log keeps it
        ("id", 7, 8),
        ("id", None, 1),
    ],
)
def test_incremental_emits_only_newer_rows_in_cursor_order(orders, tmp_path, cursor, watermark, first_id) -> None:
    ctx = context(tmp_path, {"ORDERS_DB": orders.url()}, cursor=cursor, watermark=watermark)
    table = read_source(
        source(query="SELECT id, customer, updated_at FROM orders ORDER BY id DESC", chunk_rows=4), ctx
    ).read_all()
    ids = table.column("id").to_pylist()
    assert ids == list(range(first_id, ROWS + 1))  # ordered by the cursor, despite the query's ORDER BY


def test_incremental_with_nothing_new_keeps_the_schema(orders, tmp_path) -> None:
    ctx = context(tmp_path, {"ORDERS_DB": orders.url()}, cursor="id", watermark=ROWS)
    table = read_source(source(query="SELECT id, amount FROM orders"), ctx).read_all()
    assert table.num_rows == 0 and table.schema.names == ["id", "amount"]
    assert table.schema.field("id").type == pa.int64()


def test_unreachable_database_is_a_transient_error_naming_the_table(orders, tmp_path) -> None:
    with __import__("socket").socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg://specd:{orders.password}@127.0.0.1:{port}/shop"
    with pytest.raises(SourceError) as info:
        read_source(source(query="SELECT 1", connect_timeout_s=2), context(tmp_path, {"ORDERS_DB": url}))
    assert info.value.transient
    assert "table bronze_orders: cannot connect to the database in secret ORDERS_DB" in str(info.value)
    assert orders.password not in str(info.value)


def test_wrong_password_and_bad_query_are_permanent_and_never_show_the_password(orders, tmp_path) -> None:
    wrong = orders.url().replace(orders.password, "not-the-password-123")
    with pytest.raises(SourceError) as info:
        read_source(source(query="SELECT 1"), context(tmp_path, {"ORDERS_DB": wrong}))
    assert "bronze_orders" in str(info.value) and "not-the-password-123" not in str(info.value)
    with pytest.raises(SourceError) as info:
        read_source(source(query="SELECT * FROM no_such_table"), context(tmp_path, {"ORDERS_DB": orders.url()}))
    assert not info.value.transient
    assert "table bronze_orders: query on the database in secret ORDERS_DB failed" in str(info.value)
    assert "no_such_table" in str(info.value)


def test_missing_secret_and_unknown_cursor(orders, tmp_path) -> None:
    with pytest.raises(SourceError, match="table bronze_orders: source.url: .*ORDERS_DB"):
        read_source(source(query="SELECT 1"), context(tmp_path, {}))
    with pytest.raises(SourceError, match="incremental.cursor 'nope'"):
        read_source(
            source(query="SELECT id FROM orders"),
            context(tmp_path, {"ORDERS_DB": orders.url()}, cursor="nope", watermark=None),
        )


def test_embedded_sqlite_under_the_data_root(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    with sqlite3.connect(tmp_path / "data" / "shop.db") as connection:
        connection.execute("CREATE TABLE customers (id INTEGER, email TEXT, signup TEXT)")
        connection.executemany(
            "INSERT INTO customers VALUES (?, ?, ?)",
            [(i, f"c{i}@example.org", f"2024-02-{i:02d}") for i in range(1, 11)],
        )
    spec = SqlSource.model_validate(
        {"type": "sql", "url": "sqlite:///data/shop.db", "query": "SELECT * FROM customers", "chunk_rows": 4}
    )
    ctx = SourceContext(
        table="bronze_customers", data_root=tmp_path, repo_dir=tmp_path, cursor="signup", watermark="2024-02-06"
    )
    table = read_source(spec, ctx).read_all()
    assert table.column("id").to_pylist() == [7, 8, 9, 10]
    missing = SqlSource.model_validate({"type": "sql", "url": "sqlite:///data/nope.db", "query": "SELECT 1"})
    with pytest.raises(SourceError, match="table bronze_customers: source.url: SQLite database data/nope.db not found"):
        read_source(missing, ctx)
    assert not (tmp_path / "data" / "nope.db").exists()  # nothing created by the attempt
