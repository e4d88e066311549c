"""The online store over TLS: with `tls:` set, the embedded redis-server listens on TLS only
(`--port 0 --tls-port`), tables materialise into it and are read back over `rediss://` verified
against the CA; a plaintext client and a client with the wrong CA are refused."""

from __future__ import annotations

import shutil

import pytest

from daemon.adapters.online import embedded
from tests.helpers.online import ROOT, OnlineWorld, RedisServer

pytestmark = pytest.mark.security

TABLE = """
source: {type: file, path: data/items.csv, format: csv}
online:
  keys: [item_id]
  features: [a]
"""


def test_embedded_store_materialises_and_reads_over_tls_only(tmp_path, monkeypatch, tls_secret):
    import redis

    monkeypatch.setenv("SPECD_TABLE_BUILD_PROCESS", "0")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "environments", repo / "environments")
    port = RedisServer(tmp_path / "unused").port  # a free port for the embedded store
    world = OnlineWorld(repo, tmp_path / "home", RedisServer(tmp_path / "unused"))
    world.overrides = [f"env.online_store.port={port}", "env.online_store.prefix=t", f"env.tls.ca={tls_secret.ca}",
                       f"env.tls.cert={tls_secret.cert}", "env.tls.key=secret:TLS_KEY", "env.tls.required=true",
                       "env.prefect.api_url=https://prefect.internal/api", "env.prometheus.url=https://prometheus.internal:9090"]
    world.write("data/items.csv", "item_id,a\n" + "".join(f"{i},{i * 3}\n" for i in range(20)))
    world.write("specs/tables/items.yaml", TABLE)
    try:
        done = world.converge()
        assert [k for k, _, _ in done] == ["table/items", "online/items"]
        record = embedded.running(world.home)
        assert record is not None and record.meta["tls"] is True
        client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(tls_secret.ca), socket_timeout=5)
        assert client.hgetall("t:item_id=7") and client.hget("t:item_id=7", "items:a") == b"21"
        assert len(list(client.scan_iter("t:item_id=*"))) == 20
        assert world.observed("online/items").health == "Healthy"  # observe reads it back over TLS too
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()  # plaintext on the TLS port
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(tls_secret.wrong_ca), socket_timeout=2).ping()
        import psutil

        listening = {c.laddr.port for c in psutil.Process(record.pid).net_connections("inet") if c.status == psutil.CONN_LISTEN}
        assert listening == {port}  # the TLS port only: no plaintext listener
    finally:
        embedded.stop(world.home)
    assert embedded.running(world.home) is None


def test_required_refuses_a_plaintext_store_url_hidden_in_a_secret(monkeypatch, tls_secret):
    from flows.online.store import resolved_url

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/0")
    settings = {"url": "secret:REDIS_URL", "tls": {**tls_secret.section(), "required": True}}
    with pytest.raises(ValueError, match="tls.required refuses a plaintext redis:// store"):
        resolved_url(settings)
    monkeypatch.setenv("REDIS_URL", "rediss://127.0.0.1:6390/0")
    assert resolved_url(settings).startswith("rediss://")
