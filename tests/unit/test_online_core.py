"""The online kind's pure parts: spec validation with lines, derivation, plan text, layout, request shapes."""

from __future__ import annotations

import asyncio
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from bentos.online_features import _rows_of
from bentos.validation import RequestError
from daemon.core.compose import compose
from daemon.core.graph import build_graph
from daemon.core.plan import Action, Op
from daemon.shared.errors import SpecErrors
from flows.online import decode_value, encode_key_value, entity_key, schema_mismatch
from flows.online.store import display_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    return tmp_path


def write(repo: Path, rel: str, text: str) -> None:
    (repo / rel).write_text(textwrap.dedent(text).lstrip("\n"))


def test_example_derives_online_resource_after_its_table(repo: Path) -> None:
    graph = build_graph(compose(repo, "dev"))
    online = graph.by_key()["online/gold_penguin_features"]
    assert online.depends_on == ("table/gold_penguin_features",)
    assert online.path == "specs/tables/gold_penguin_features.yaml"
    assert online.spec.keys == ["penguin_id"] and "is_male" not in online.spec.features
    service = graph.by_key()["service/penguin_api"]
    assert "table/gold_penguin_features" in service.depends_on
    table = graph.by_key()["table/gold_penguin_features"]
    assert online.wave > table.wave


def test_online_fingerprint_follows_the_block_and_the_table(repo: Path) -> None:
    before = build_graph(compose(repo, "dev")).by_key()["online/gold_penguin_features"].fingerprint
    path = repo / "specs/tables/gold_penguin_features.yaml"
    path.write_text(path.read_text().replace("ttl_s: 604800", "ttl_s: 3600"))
    after = build_graph(compose(repo, "dev")).by_key()["online/gold_penguin_features"].fingerprint
    assert after != before
    path.write_text(path.read_text().replace("ttl_s: 3600", "ttl_s: 604800").replace("is_male: \"CAST(sex = 'male' AS BIGINT)\"", "is_male: \"CAST(sex = 'female' AS BIGINT)\""))
    assert build_graph(compose(repo, "dev")).by_key()["online/gold_penguin_features"].fingerprint not in (before, after)


@pytest.mark.parametrize("block, message", [
    ("online: {keys: [nope]}", "online.keys: unknown column 'nope'"),
    ("online: {keys: [penguin_id], features: [species, wings]}", "online.features: unknown column 'wings'"),
    ("online: {keys: [penguin_id], features: [penguin_id]}", "must not include the keys"),
    ("online: {keys: [penguin_id], store: other}", "Input should be 'default'"),
    ("online: {keys: []}", "at least 1 item"),
])
def test_bad_online_blocks_name_file_and_line(repo: Path, block: str, message: str) -> None:
    path = repo / "specs/tables/gold_penguin_features.yaml"
    text = path.read_text().split("# Served by key")[0]
    path.write_text(text + block + "\n")
    line = len(text.splitlines()) + 1
    with pytest.raises(SpecErrors) as info:
        compose(repo, "dev")
    assert f"specs/tables/gold_penguin_features.yaml:{line}: online" in str(info.value) and message in str(info.value)


def test_features_from_must_name_an_online_table_and_its_key(repo: Path) -> None:
    service = repo / "specs/services/penguin_api.yaml"
    service.write_text(service.read_text().replace("key: penguin_id", "key: species"))
    with pytest.raises(SpecErrors) as info:
        compose(repo, "dev")
    assert "features_from.key: 'species' is not the online key of table 'gold_penguin_features'" in str(info.value)
    service.write_text(service.read_text().replace("table: gold_penguin_features", "table: silver_penguins").replace("key: species", "key: penguin_id"))
    with pytest.raises(SpecErrors) as info:
        compose(repo, "dev")
    assert "table 'silver_penguins' has no online: block" in str(info.value)
    service.write_text(service.read_text().replace("table: silver_penguins", "table: no_such_table"))
    with pytest.raises(SpecErrors) as info:
        build_graph(compose(repo, "dev"), read_text=lambda rel: (repo / rel).read_text())
    assert "features_from.table: unknown table 'no_such_table'" in str(info.value)


@pytest.mark.parametrize("url, ok", [
    ("redis://127.0.0.1:6379/0", True), ("rediss://cache.internal:6380", True), ("unix:///run/redis.sock", True),
    ("${secret:REDIS_URL}", True), ("http://127.0.0.1:6379", False), ("redis://user:hunter2@127.0.0.1", False),
])
def test_online_store_url(repo: Path, url: str, ok: bool) -> None:
    write(repo, "environments/dev.yaml", f"""
    defaults: [base, _self_]
    name: dev
    online_store: {{url: "{url}"}}
    """)
    if ok:
        assert compose(repo, "dev").env.online_store.url is not None
    else:
        with pytest.raises(SpecErrors):
            compose(repo, "dev")


def test_display_url_hides_passwords_and_secrets() -> None:
    assert display_url({"url": "secret:REDIS_URL"}) == "${secret:REDIS_URL}"
    assert "hunter2" not in display_url({"url": "redis://u:hunter2@h:1/0"})
    assert display_url({"url": None, "port": 7000}) == "redis://127.0.0.1:7000 (embedded)"


def test_plan_text_from_observed_details(repo: Path) -> None:
    from daemon.adapters.base import AdapterContext
    from daemon.adapters.online.adapter import OnlineAdapter

    composed = compose(repo, "dev")
    adapter = OnlineAdapter(AdapterContext(composed.env, repo / ".home", repo, "rev"))
    action = Action("online", "penguin_features", Op.UPDATE, "spec or inputs changed")
    adapter._details["online/penguin_features"] = {"target_version": 3, "version": 2, "preview": {"added": 120, "changed": 40, "removed": 0, "full": 0}}
    assert adapter.describe(action, None) == "materialise v3 (+120 keys, ~40 changed)"
    adapter._details["online/penguin_features"] = {"target_version": 3, "version": 2, "preview": None}
    assert adapter.describe(action, None) == "materialise v3 (diff against v2 at apply)"
    adapter._details["online/penguin_features"] = {"keys": 7}
    assert adapter.describe(Action("online", "penguin_features", Op.DELETE, "x"), None) == "delete the online keys of table penguin_features (7 keys)"


def test_layout_and_values() -> None:
    assert entity_key("specd-dev", ["penguin_id"], [17]) == "specd-dev:penguin_id=17"
    assert entity_key("p", ["a", "b"], ["x", 2.0]) == "p:a=x|b=2"
    assert encode_key_value(True) == "1"
    assert decode_value(b"39.1", "float64") == 39.1 and decode_value("2007", "int64") == 2007 and decode_value(None, "string") is None
    assert schema_mismatch({"a": "float64"}, {"a": "float64", "b": "int64"}) == ["b is not in the online store"]
    assert schema_mismatch({"a": "string"}, {"a": "float64"}, provided=["a"]) == []


def test_request_shapes() -> None:
    rows, rebuild = _rows_of({"penguin_id": 3, "user_id": "u"}, "penguin_id")
    assert rows == [{"penguin_id": 3}] and rebuild([{"x": 1}]) == {"user_id": "u", "features": {"x": 1}}
    rows, rebuild = _rows_of({"features": {"penguin_id": 3, "year": 1}}, "penguin_id")
    assert rows == [{"penguin_id": 3, "year": 1}]
    rows, rebuild = _rows_of({"instances": [{"penguin_id": 1}, {"year": 2}]}, "penguin_id")
    assert len(rows) == 2 and rebuild(rows) == {"instances": rows}
    body = {"features": {"year": 1}}
    rows, rebuild = _rows_of(body, "penguin_id")
    assert rows == [{"year": 1}]


def test_bad_key_is_400() -> None:
    from bentos.online_features import OnlineFeatures

    lookup = OnlineFeatures.__new__(OnlineFeatures)
    lookup.key, lookup.table, lookup.prefix = "penguin_id", "t", "p"
    with pytest.raises(RequestError) as info:
        asyncio.run(lookup.enrich({"penguin_id": [1]}, {"year": "int64"}))
    assert info.value.status == 400 and info.value.field == "penguin_id"


@pytest.mark.parametrize("installed", [False, True])
def test_no_store_reachable(repo: Path, monkeypatch: pytest.MonkeyPatch, installed: bool) -> None:
    """The quick start without Redis: Degraded and no action when redis-server is missing; a create
    (which starts the embedded store) when it is installed."""
    import socket

    from daemon.adapters.base import AdapterContext
    from daemon.adapters.online import embedded
    from daemon.adapters.online.adapter import OnlineAdapter
    from daemon.core.plan import make_plan

    monkeypatch.setattr(embedded, "installed", lambda: installed)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    composed = compose(repo, "dev", [f"env.online_store.port={port}"])
    graph = build_graph(composed)
    adapter = OnlineAdapter(AdapterContext(composed.env, repo / ".home", repo, "rev"))
    online = [r for r in graph.resources if r.kind == "online"]
    observed = adapter.observe(online)["online/gold_penguin_features"]
    plan = make_plan("rev", "dev", type(graph)(tuple(online)), {"online/gold_penguin_features": observed})
    if installed:
        assert not observed.exists and "embedded online store is not running yet" in observed.message
        assert [str(a.op) for a in plan.actions] == ["create"]
    else:
        assert observed.health == "Degraded" and "no online store reachable" in observed.message
        assert [str(a.op) for a in plan.actions] == ["unchanged"]


def test_service_dashboard_has_the_online_row_only_with_features_from(repo: Path) -> None:
    from dashboards import panels

    service = next(d for d in compose(repo, "dev").docs if d.kind == "service")
    rows = {r["title"]: r for r in panels.service_dashboard(service.name, service.data)["rows"]}
    titles = [p["title"] for p in rows["Online features"]["panels"]]
    assert titles == ["Feature lookup latency", "Feature lookups by result", "Feature lookup hit ratio"]
    assert "specd_service_feature_lookups_total" in json.dumps(rows["Online features"])
    plain = {k: v for k, v in service.data.items() if k != "features_from"}
    assert "Online features" not in {r["title"] for r in panels.service_dashboard(service.name, plain)["rows"]}
