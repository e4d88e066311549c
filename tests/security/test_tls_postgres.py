"""The SQL table source over TLS against a real PostgreSQL with `ssl=on` and `hostssl`-only pg_hba:
with the environment's `tls.ca` the source connects with `sslmode=verify-full` and reads every row;
the wrong CA fails closed; a plaintext connection is refused by the server; `tls.required` refuses a
URL that asks for less than verify-full."""

from __future__ import annotations

import pytest

from daemon.schema.table_sources import SqlSource
from flows.tables.sources import SourceContext, SourceError, read_source
from tests.helpers.tables_transforms import cluster

pytestmark = pytest.mark.security


@pytest.fixture(scope="module")
def pg_tls(pki):
    with cluster((pki.cert, pki.key)) as server:
        with server.connect() as connection:
            connection.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
            connection.execute("INSERT INTO items SELECT i, 'n' || i FROM generate_series(1, 30) i")
        yield server


def read(tmp_path, url: str, tls: dict) -> int:
    spec = SqlSource.model_validate({"type": "sql", "url": "secret:DB", "query": "SELECT * FROM items"})
    ctx = SourceContext("items", tmp_path, tmp_path, resolve_secret=lambda ref: {"secret:DB": url, "secret:TLS_KEY": "unused"}[ref],
                        tls=tls)
    return sum(batch.num_rows for batch in read_source(spec, ctx))


def test_sql_source_reads_over_verified_tls(pg_tls, pki, tmp_path):
    url = pg_tls.url().replace("127.0.0.1", "localhost")  # verify-full checks the host name against the certificate
    assert read(tmp_path, url, {"ca": str(pki.ca), "required": True}) == 30


def test_wrong_ca_fails_closed_and_plaintext_is_refused(pg_tls, pki, tmp_path):
    with pytest.raises(SourceError, match="cannot connect"):
        read(tmp_path, pg_tls.url(), {"ca": str(pki.wrong_ca)})
    with pytest.raises(SourceError, match="no encryption|pg_hba"):
        read(tmp_path, pg_tls.url() + "?sslmode=disable", {})


def test_required_refuses_a_url_that_does_not_verify(pg_tls, pki, tmp_path):
    with pytest.raises(SourceError, match="tls.required needs sslmode=verify-full"):
        read(tmp_path, pg_tls.url() + "?sslmode=require", {"ca": str(pki.ca), "required": True})
    with pytest.raises(SourceError, match="tls.required needs sslmode=verify-full"):
        read(tmp_path, pg_tls.url(), {"required": True})  # no CA to verify against
