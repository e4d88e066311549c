"""Online features against a real redis-server: materialise, no-op, diff, revert, crash, prune, TTL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from flows.online import M_PENDING_VERSION, M_VERSION, meta_key, tables_key
from tests.helpers.online import ROOT, OnlineWorld

pytestmark = pytest.mark.integration

TABLE = """
source: {{type: file, path: data/items.csv, format: csv}}
features:
  columns: {{score: "a * {factor}"}}
{extra}
online:
  keys: [item_id]
  features: [a, score, label]
  ttl_s: 3600
"""


def items(n: int, bump: set[int] = frozenset(), drop: set[int] = frozenset(), dupes: bool = True) -> str:
    lines = ["item_id,a,label"]
    for i in range(n):
        if i in drop:
            continue
        a = i + (100 if i in bump else 0)
        if dupes and i % 10 == 0:
            lines.append(f"{i},-1,stale")  # an earlier row of the same key: the later one wins
        lines.append(f"{i},{a},{'x' if i % 2 else 'y'}")
    return "\n".join(lines) + "\n"


def entity(world: OnlineWorld, key: int) -> dict[str, str]:
    return world.redis.client().hgetall(f"t:item_id={key}")


def online_keys(world: OnlineWorld) -> list[str]:
    return [k for k in world.redis.client().scan_iter("t:item_id=*")]


def setup_world(world: OnlineWorld, n: int = 50, factor: int = 2, extra: str = "") -> None:
    world.write("data/items.csv", items(n))
    world.write("specs/tables/items.yaml", TABLE.format(factor=factor, extra=extra))


def test_materialise_counts_ttl_version_then_noop(online_world: OnlineWorld) -> None:
    setup_world(online_world)
    plan, _, _ = online_world.plan()
    line = next(a for a in plan.actions if a.key == "online/items")
    assert str(line.op) == "create" and "materialise the table's latest version" in line.summary
    done = online_world.converge()
    assert [k for k, _, _ in done] == ["table/items", "online/items"]
    client = online_world.redis.client()
    assert len(online_keys(online_world)) == 50  # distinct keys, duplicates collapsed to the last row
    assert entity(online_world, 10) == {"items:a": "10", "items:score": "20", "items:label": "y", "_ts:items": entity(online_world, 10)["_ts:items"]}
    assert 3000 < client.ttl("t:item_id=7") <= 3600
    meta = client.hgetall(meta_key("t", "items"))
    assert meta[M_VERSION] == "0" and meta["keys"] == "50" and M_PENDING_VERSION not in meta
    assert json.loads(meta["schema"]) == {"a": "int64", "score": "int64", "label": "string"}
    assert client.smembers(tables_key("t")) == {"items"}
    observed = online_world.observed("online/items")
    assert observed.health == "Healthy" and "v0 materialised: 50 keys" in observed.message

    # the same version again: the plan has nothing to do, and a forced run writes nothing
    plan, graph, adapters = online_world.plan()
    assert not [a for a in plan.changes]
    from dataclasses import replace

    action = replace(next(a for a in plan.actions if a.key == "online/items"))
    outcome = adapters["online"].apply(action, graph.by_key()["online/items"])
    assert outcome.details["mode"] == "noop" and outcome.details["written"] == 0 and outcome.details["ttl_refreshed"] == 50


def test_new_version_writes_only_changed_keys(online_world: OnlineWorld) -> None:
    setup_world(online_world)
    online_world.converge()
    online_world.write("data/items.csv", items(52, bump={3, 4, 5}, drop={7}))
    assert [k for k, _, _ in online_world.converge()] == ["table/items"]  # the table rebuilds from its new input...
    observed = online_world.observed("online/items")  # ...and the next observe sees the store behind it
    assert observed.drift == ("table items is at v1, the store holds v0",)
    plan, _, _ = online_world.plan()
    line = next(a for a in plan.actions if a.key == "online/items")
    assert str(line.op) == "update"
    assert line.summary == "materialise v1 (+2 keys, ~3 changed, -1 removed)"  # the diff of the two Delta versions
    done = dict((k, m) for k, _, m in online_world.converge())
    assert "v1 materialised (diff): 5 keys written, 1 removed, 46 unchanged, 51 keys" in done["online/items"]
    assert entity(online_world, 4)["items:score"] == "208"
    assert entity(online_world, 7) == {}
    assert len(online_keys(online_world)) == 51


def test_revert_rolls_values_back(online_world: OnlineWorld) -> None:
    setup_world(online_world, factor=2)
    online_world.converge()
    before = {k: entity(online_world, k) for k in (1, 2, 30)}
    setup_world(online_world, factor=3)
    online_world.converge()
    assert entity(online_world, 2)["items:score"] == "6"
    setup_world(online_world, factor=2)  # what `git revert` leaves in the checkout
    plan, _, _ = online_world.plan()
    ops = {a.key: str(a.op) for a in plan.changes}
    assert ops == {"table/items": "restore", "online/items": "update"}
    online_world.converge()
    after = {k: entity(online_world, k) for k in (1, 2, 30)}
    assert {k: {f: v for f, v in e.items() if not f.startswith("_ts")} for k, e in after.items()} == \
        {k: {f: v for f, v in e.items() if not f.startswith("_ts")} for k, e in before.items()}
    assert online_world.redis.client().hget(meta_key("t", "items"), M_VERSION) == "2"


def _job_request(world: OnlineWorld, version: int) -> dict:
    graph, ctx = world.graph()
    adapter = __import__("daemon.adapters.online.adapter", fromlist=["OnlineAdapter"]).OnlineAdapter(ctx)
    from dataclasses import asdict

    resource = graph.by_key()["online/items"]
    job = adapter._job(resource, world.uri("items"))
    return {"store": {**adapter.settings, "batch_rows": 200}, "job": asdict(job), "version": version}


def test_kill_9_mid_materialisation_then_rerun_converges(online_world: OnlineWorld) -> None:
    n = 60_000
    online_world.write("data/items.csv", items(n, dupes=False))
    online_world.write("specs/tables/items.yaml", TABLE.format(factor=2, extra=""))
    online_world.converge()
    online_world.write("data/items.csv", items(n, bump=set(range(0, n, 2)), dupes=False))
    plan, graph, adapters = online_world.plan()
    assert [a.key for a in plan.changes] == ["table/items"]
    adapters["table"].apply(plan.changes[0], graph.by_key()["table/items"])
    client = online_world.redis.client()
    proc = subprocess.Popen([sys.executable, "-m", "flows.online.materialize"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT, text=True, start_new_session=True)
    proc.stdin.write(json.dumps(_job_request(online_world, 1)))
    proc.stdin.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (client.hget(meta_key("t", "items"), M_PENDING_VERSION) and client.hget("t:item_id=0", "items:a") == "100"):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    meta = client.hgetall(meta_key("t", "items"))
    assert meta[M_PENDING_VERSION] == "1" and meta[M_VERSION] == "0", "killed before it finished"
    changed_so_far = sum(1 for i in range(0, n, 2000) if client.hget(f"t:item_id={i}", "items:a") == str(i + 100))
    assert changed_so_far < n // 2000, "the kill landed mid-way"
    observed = online_world.observed("online/items")
    assert any("interrupted materialisation of v1" in d for d in observed.drift)
    done = dict((k, m) for k, _, m in online_world.converge())
    assert "(full)" in done["online/items"]
    meta = client.hgetall(meta_key("t", "items"))
    assert meta[M_VERSION] == "1" and M_PENDING_VERSION not in meta
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.hget(f"t:item_id={i}", "items:a")
    values = pipe.execute()
    assert values == [str(i + 100 if i % 2 == 0 else i) for i in range(n)]
    assert not online_world.plan()[0].changes


def test_removed_online_block_deletes_keys_only_under_prune(online_world: OnlineWorld) -> None:
    setup_world(online_world)
    online_world.converge()
    online_world.write("specs/tables/items.yaml", TABLE.format(factor=2, extra="").split("online:")[0])
    plan, _, _ = online_world.plan()
    assert {a.key: str(a.op) for a in plan.actions if a.kind == "online"} == {"online/items": "orphan"}
    online_world.converge()
    assert len(online_keys(online_world)) == 50  # prune is off: kept

    setup_world(online_world, extra="prune: true")
    online_world.converge()
    online_world.write("specs/tables/items.yaml", TABLE.format(factor=2, extra="prune: true").split("online:")[0])
    plan, _, _ = online_world.plan()
    delete = next(a for a in plan.changes if a.kind == "online")
    assert str(delete.op) == "delete" and delete.summary == "delete the online keys of table items (50 keys)"
    online_world.converge()
    assert online_keys(online_world) == []
    assert not online_world.redis.client().exists(meta_key("t", "items"))


def test_unreachable_store_is_degraded_and_fails_nothing_else(online_world: OnlineWorld) -> None:
    setup_world(online_world)
    online_world.redis.stop()
    observed = online_world.observed("online/items")
    assert observed.health == "Degraded" and "no online store reachable at redis://127.0.0.1:" in observed.message
    plan, graph, adapters = online_world.plan()
    table = next(a for a in plan.changes if a.kind == "table")
    adapters["table"].apply(table, graph.by_key()["table/items"])  # the table still builds


def test_unknown_online_columns_are_spec_errors_with_lines(online_world: OnlineWorld) -> None:
    from daemon.core.compose import compose
    from daemon.shared.errors import SpecErrors

    online_world.write("specs/tables/items.yaml", """
    source: {type: file, path: data/items.csv, format: csv}
    schema:
      columns: [{name: item_id, type: int64}, {name: a, type: int64}]
    online:
      keys: [item_id]
      features: [a, nope]
    """)
    with pytest.raises(SpecErrors) as info:
        compose(online_world.repo, "dev")
    text = str(info.value)
    assert "specs/tables/items.yaml:4: online: " in text and "unknown column 'nope'" in text


def test_embedded_store_started_when_no_url(online_world: OnlineWorld, tmp_path) -> None:
    from daemon.adapters.online import embedded

    port = online_world.redis.port
    online_world.redis.stop()  # reuse its free port for the embedded store
    online_world.overrides = [f"env.online_store.port={port}", "env.online_store.prefix=t"]
    setup_world(online_world)
    plan, _, _ = online_world.plan()
    assert str(next(a for a in plan.actions if a.key == "online/items").op) == "create"
    try:
        online_world.converge()
        record = embedded.running(online_world.home)
        assert record is not None
        assert len(online_keys(online_world)) == 50
    finally:
        assert embedded.stop(online_world.home)
    assert embedded.running(online_world.home) is None


def test_latest_row_per_key_by_event_time(online_world: OnlineWorld) -> None:
    online_world.write("data/events.csv", "user_id,clicks,updated_at\n"
                       "1,30,2024-01-03T00:00:00\n1,10,2024-01-01T00:00:00\n2,5,2024-01-02T00:00:00\n1,20,2024-01-02T00:00:00\n")
    online_world.write("specs/tables/events.yaml", """
    source: {type: file, path: data/events.csv, format: csv}
    clean:
      columns:
        updated_at: {cast: "timestamp[us]"}
    online: {keys: [user_id], timestamp: updated_at}
    """)
    online_world.converge()
    client = online_world.redis.client()
    first = client.hgetall("t:user_id=1")
    assert first["events:clicks"] == "30"  # the latest by updated_at, not the last row read
    assert float(first["_ts:events"]) == 1704240000.0  # 2024-01-03T00:00:00Z in epoch seconds
    assert "events:updated_at" not in first  # the timestamp is not a feature by default
    assert client.hgetall("t:user_id=2")["events:clicks"] == "5"
