"""Retrain policy decisions (pure), the `retrain:` spec, and the plan's JSON format and new ops
(follows, metadata update, forced sync, suspended)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from daemon.adapters.models.retrain import DataState, decide, last_fire
from daemon.core.compose import compose
from daemon.core.graph import build_graph
from daemon.core.plan import FORMAT_VERSION, METADATA_REASON, SYNC_REASON, Op, make_plan, structured_diff
from daemon.core.state import Observed
from daemon.schema.retrain import RetrainSpec

NOW = 1_700_000_000.0
TRAINED = DataState(1, "d1", 400, at=NOW - 7200, spec="gold-fp")


def live(rows: int, identity: str = "d2", version: int = 2, spec: str = "gold-fp") -> DataState:
    return DataState(version, identity, rows, spec=spec)


@pytest.mark.parametrize(
    ("policy", "now_data", "fire", "lagging", "text"),
    [
        ({"on": "new_data", "min_new_rows": 50}, live(500), True, False, "gold v2 has +100 rows since v1 (policy new_data ≥ 50)"),
        ({"on": "new_data", "min_new_rows": 500}, live(500), False, True, "data ahead by 100 rows"),
        ({"on": "new_data", "min_fraction": 0.5}, live(500), False, True, "needs ≥ 0.5 × 400"),
        ({"on": "new_data", "min_fraction": 0.2}, live(500), True, False, "+100 rows"),
        ({"on": "new_data", "min_interval": "3h"}, live(500), False, True, "min_interval 3h"),
        ({"on": "new_data", "min_interval": "1h"}, live(500), True, False, "+100 rows"),
        ({}, live(400, identity="d1", version=3), False, False, ""),  # same rows rewritten: same digest, nothing
        ({"on": "never"}, live(500), False, True, "policy never"),
        ({"on": "new_data", "min_new_rows": 500}, live(400, spec="gold-fp-2"), True, False, "rebuilt from a changed spec"),
        ({"on": "never", "table_version": 1}, live(500), False, False, ""),  # pinned to what it was trained on
        ({"on": "never", "table_version": 2}, live(500), True, False, "pinned to gold v2"),
    ],
    ids=["rows-fire", "rows-short", "fraction-short", "fraction-fire", "interval-wait", "interval-ok", "same-digest",
         "never", "spec-changed", "pinned-same", "pinned-moved"],
)
def test_retrain_decisions(policy, now_data, fire, lagging, text) -> None:
    decision = decide(RetrainSpec.model_validate(policy), "gold", TRAINED, now_data, NOW)
    assert (decision.fire, decision.lagging) == (fire, lagging)
    assert text in decision.reason


def test_schedule_policy_fires_only_after_a_cron_time_since_training() -> None:
    policy = RetrainSpec.model_validate({"on": "schedule", "cron": "0 * * * *"})
    fired = last_fire("0 * * * *", NOW)
    assert NOW - 3600 < fired <= NOW
    assert decide(policy, "gold", TRAINED, live(500), NOW, fired).fire  # trained 2 h ago, an hour mark since
    recent = DataState(1, "d1", 400, at=fired + 1)
    verdict = decide(policy, "gold", recent, live(500), NOW, fired)
    assert not verdict.fire and verdict.lagging and "next 0 * * * * fire" in verdict.reason


def test_retrain_spec_validation_and_yaml11_on_key() -> None:
    assert RetrainSpec.model_validate({True: "never"}).on == "never"  # YAML 1.1 reads `on:` as True
    for bad, message in [({"on": "schedule"}, "needs retrain.cron"), ({"on": "new_data", "cron": "* * * * *"}, "only used with on: schedule"),
                         ({"on": "new_data", "table_version": 3}, "only with on: never"), ({"min_interval": "soon"}, "not a duration"),
                         ({"on": "schedule", "cron": "nope"}, "not a valid cron")]:
        with pytest.raises(ValidationError, match=message):
            RetrainSpec.model_validate(bad)


FILE = "source: {type: file, path: data/x.csv, format: csv}\n"
SQL = "source: {{type: table, inputs: [{0}], sql: 'SELECT * FROM {0}'}}\n"


@pytest.fixture
def chain(spec_repo):
    spec_repo.write("specs/tables/raw.yaml", FILE)
    spec_repo.write("specs/tables/clean.yaml", SQL.format("raw"))
    spec_repo.write("specs/tables/gold.yaml", SQL.format("clean"))
    graph = build_graph(compose(spec_repo.path, "dev"))
    return type(graph)(tuple(r for r in graph.resources if r.kind == "table"))


def synced(graph, **overrides):
    out = {r.key: Observed(True, r.fingerprint, "abc", "Healthy") for r in graph.resources}
    out.update(overrides)
    return out


def test_follows_forced_metadata_and_suspended(chain) -> None:
    fps = {r.name: r.fingerprint for r in chain.resources}
    forced = make_plan("f" * 40, "dev", chain, synced(chain), forced={"table/raw"})
    ops = {a.name: (a.op, a.reason, a.follows) for a in forced.actions}
    assert ops["raw"] == (Op.UPDATE, SYNC_REASON, ())
    assert ops["clean"][0] == Op.UPDATE and ops["clean"][2] == ("table/raw",)
    assert ops["gold"][2] == ("table/clean",)  # transitively: gold follows clean, which follows raw

    metadata = make_plan("f" * 40, "dev", chain, synced(chain, **{"table/raw": Observed(True, fps["raw"], "abc", "Healthy", drift=(f"{METADATA_REASON}: description",))}))
    assert [(a.name, a.op) for a in metadata.changes] == [("raw", Op.UPDATE)]  # metadata moves no data: nothing follows

    held = make_plan("f" * 40, "dev", chain, synced(chain), forced={"table/raw"}, suspended={"table/raw"})
    assert {a.name: a.op for a in held.actions}["raw"] == Op.SUSPENDED
    assert not held.has_changes  # a suspended resource is not applied, and nothing follows it
    assert "1 suspended" in held.to_text()


def test_plan_json_format(chain) -> None:
    before = {"source": {"type": "file", "path": "a.csv"}, "variants": [{"name": "champion", "weight": 90}]}
    after = {"source": {"type": "file", "path": "b.csv"}, "variants": [{"name": "champion", "weight": 80}], "layer": "gold"}
    from daemon.core.plan import jsonable_change

    changes = tuple(jsonable_change(c) for c in structured_diff(before, after))
    assert changes == (
        {"path": "layer", "before": None, "after": "gold", "added": True},
        {"path": "source.path", "before": "a.csv", "after": "b.csv"},
        {"path": "variants[champion].weight", "before": 90, "after": 80},
    )
    plan = make_plan("f" * 40, "dev", chain, synced(chain, **{"table/raw": Observed(True, "old", "abc", "Healthy")}),
                     structured_changes={"table/raw": changes}, warnings=("SPECD_X differs from what the daemon applied",))
    data = json.loads(json.dumps(plan.to_json()))
    assert data["format_version"] == FORMAT_VERSION == 2
    raw = next(a for a in data["actions"] if a["name"] == "raw")
    assert raw["changes"][1] == {"path": "source.path", "before": "a.csv", "after": "b.csv"}
    assert next(a for a in data["actions"] if a["name"] == "clean")["follows"] == ["table/raw"]
    assert data["warnings"] and "warning: SPECD_X" in plan.to_text()


def test_plan_composes_with_the_environment_the_daemon_applied(tmp_path, monkeypatch) -> None:
    """The environment rule: a second shell's SPECD_SERVICE_PORT_BASE does not change desired state."""
    import shutil

    from daemon.core.compose import compose
    from daemon.runtime import operations
    from daemon.shared.secrets import ENV_READS, pin_env
    from tests.conftest import ROOT

    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "environments", repo / "environments")
    (repo / "specs").mkdir()
    monkeypatch.setenv("SPECD_SERVICE_PORT_BASE", "4100")
    try:
        applied = compose(repo, "dev").env.services.port_base  # what the daemon composed with
        operations.record_applied_env(tmp_path, ENV_READS, ["env.daemon.metrics_port=9999", "tables.x.layer=gold"], "dev")
        monkeypatch.setenv("SPECD_SERVICE_PORT_BASE", "5100")  # another shell
        overrides, warnings = operations.pin_to_daemon(tmp_path, "dev", [])
        assert overrides == ["env.daemon.metrics_port=9999"]  # only the daemon's env.* overrides carry over
        assert any("SPECD_SERVICE_PORT_BASE" in w and "'5100'" in w and "'4100'" in w for w in warnings)
        env = compose(repo, "dev", overrides).env
        assert env.services.port_base == applied == 4100 and env.daemon.metrics_port == 9999
        assert operations.pin_to_daemon(tmp_path, "prod", [])[1] == []  # another environment: not pinned
    finally:
        pin_env(None)


def test_status_watch_redraws_until_interrupted_and_ages(tmp_path, monkeypatch) -> None:
    from daemon.cli import status_watch
    from daemon.runtime.journal import Journal
    from daemon.shared.paths import journal_path

    calls = []

    def render() -> int:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return 0

    monkeypatch.setattr(status_watch.time, "sleep", lambda s: None)
    assert status_watch.watch(render, 0.1) == 0 and len(calls) == 3
    Journal(journal_path(tmp_path)).append("ActionSucceeded", "abc", resource="table/a", op="update", message="v1")
    data = {"last_cycle": {"finished_at": None}, "resources": [{"kind": "table", "name": "a", "sync": "Synced"},
                                                                {"kind": "table", "name": "b", "sync": "OutOfSync"}]}
    ages = status_watch.last_sync_ages(tmp_path, data)
    assert ages["table/a"].endswith("s ago") and "table/b" not in ages
    assert status_watch.age_text(7200) == "2h ago" and status_watch.age_text(30) == "30s ago"
