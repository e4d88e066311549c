"""Publishing dashboards: provisioning files (embedded default) and the Grafana HTTP API (fake Grafana).

Covers the fake's Grafana behaviours (401, 409, 412, versions), push with version messages, drift from a
hand edit (restored or reported), `git revert` re-publishing the earlier dashboard, Grafana down
(transient error, Degraded, nothing deleted), pruning, and crash safety of the file publisher.
"""

from __future__ import annotations

import json

import httpx
import pytest

from daemon.core.plan import Op
from daemon.shared.errors import ApplyError
from dashboards.grafana_api import MESSAGE
from tests.helpers import dashboards as cd
from tests.helpers.fakes.grafana import FakeGrafana


@pytest.fixture()
def grafana(monkeypatch):
    monkeypatch.setenv("GRAFANA_TOKEN", cd.TOKEN)
    with FakeGrafana(token=cd.TOKEN) as fake:
        yield fake


def _grafana_env(url: str, **extra) -> dict:
    return {"url": url, "token": "${secret:GRAFANA_TOKEN}", "folder": "specd-test", "retries": 1, "retry_backoff_s": 0.01, **extra}


def _ops(plan) -> dict[str, str]:
    return {a.name: str(a.op) for a in plan.actions}


# ---------------------------------------------------------------------- the fake behaves like Grafana
def test_fake_grafana_answers_like_grafana(grafana):
    auth = {"Authorization": f"Bearer {cd.TOKEN}"}
    with httpx.Client(base_url=grafana.url, timeout=5) as client:
        assert client.get("/api/search").status_code == 401
        assert client.get("/api/search", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/health").json()["version"].startswith("11.")
        assert client.post("/api/folders", json={"uid": "f1", "title": "F"}, headers=auth).status_code == 200
        assert client.post("/api/folders", json={"uid": "f1", "title": "F"}, headers=auth).status_code == 409
        body = {"dashboard": {"uid": "d1", "title": "D", "tags": ["specd"]}, "folderUid": "f1", "message": "first"}
        assert client.post("/api/dashboards/db", json=body, headers=auth).json()["version"] == 1
        stale = {**body, "dashboard": {**body["dashboard"], "version": 0}, "message": "stale"}
        refused = client.post("/api/dashboards/db", json=stale, headers=auth)
        assert refused.status_code == 412 and refused.json()["status"] == "version-mismatch"
        current = {**body, "dashboard": {**body["dashboard"], "version": 1}, "message": "second"}
        assert client.post("/api/dashboards/db", json=current, headers=auth).json()["version"] == 2
        assert client.post("/api/dashboards/db", json={**stale, "overwrite": True}, headers=auth).json()["version"] == 3
        same_title = {"dashboard": {"uid": "d2", "title": "D"}, "folderUid": "f1"}
        assert client.post("/api/dashboards/db", json=same_title, headers=auth).json()["status"] == "name-exists"
        versions = client.get("/api/dashboards/uid/d1/versions", headers=auth).json()["versions"]
        assert [v["version"] for v in versions] == [3, 2, 1] and versions[-1]["message"] == "first"
        assert client.get("/api/dashboards/uid/d1", headers=auth).json()["meta"]["folderUid"] == "f1"
        assert [h["uid"] for h in client.get("/api/search", params={"tag": "specd", "folderUIDs": "f1"}, headers=auth).json()] == ["d1"]
        assert client.delete("/api/dashboards/uid/d1", headers=auth).status_code == 200
        assert client.get("/api/dashboards/uid/d1", headers=auth).status_code == 404


# ---------------------------------------------------------------------- push path
def test_push_creates_the_folder_versions_with_messages_and_converges(grafana, tmp_path):
    repo = cd.write_repo(tmp_path / "repo", {"team": cd.custom_dashboard()}, grafana=_grafana_env(grafana.url))
    grafana.create_folder({"uid": "specd-test", "title": "specd-test"})  # exists already: 409 is fine
    plan, adapter, graph = cd.reconcile(repo, tmp_path / "home", "test", revision="1" * 40)
    assert _ops(plan) == {"team": "create", "platform": "create"}
    assert "to Grafana folder 'specd-test'" in plan.to_text()
    entry = grafana.dashboards["specd-team"]
    assert entry["folderUid"] == "specd-test" and entry["model"]["title"] == "Team overview"
    match = MESSAGE.match(entry["versions"][-1]["message"])
    assert match and match["revision"] == "1" * 12 and match["fingerprint"] == graph.by_key()["dashboard/team"].fingerprint
    assert (tmp_path / "home" / "grafana" / "prometheus" / "rules" / "team.yml").is_file()
    again = cd.plan_for(adapter, graph, "test")
    assert not again.has_changes, again.to_text()
    observed = adapter.observe(graph.resources)["dashboard/team"]
    assert observed.health == "Healthy" and observed.details["version"] == 1


def test_hand_edit_is_drift_and_is_restored(grafana, tmp_path):
    repo = cd.write_repo(tmp_path / "repo", {"team": cd.custom_dashboard()}, grafana=_grafana_env(grafana.url))
    cd.reconcile(repo, tmp_path / "home", "test")
    grafana.edit_by_hand("specd-team", lambda model: model.update(title="Mine now"), user="alice")
    composed, graph = cd.graph_of(repo, "test")
    adapter = cd.adapter_for(composed, tmp_path / "home")
    observed = adapter.observe(graph.resources)["dashboard/team"]
    assert observed.health == "Degraded" and "alice" in observed.message and "restored" in observed.message
    plan = cd.plan_for(adapter, graph, "test")
    assert _ops(plan)["team"] == "restore", plan.to_text()  # the pre-edit version is ours: restore it
    cd.apply_all(adapter, graph, plan)
    assert grafana.model("specd-team")["title"] == "Team overview"
    assert [v["version"] for v in grafana.dashboards["specd-team"]["versions"]] == [1, 2, 3]
    assert not cd.plan_for(adapter, graph, "test").has_changes


def test_hand_edit_is_only_reported_when_on_drift_is_report(grafana, tmp_path):
    repo = cd.write_repo(tmp_path / "repo", {"team": cd.custom_dashboard()}, grafana=_grafana_env(grafana.url, on_drift="report"))
    cd.reconcile(repo, tmp_path / "home", "test")
    grafana.edit_by_hand("specd-team", lambda model: model["panels"].clear())
    composed, graph = cd.graph_of(repo, "test")
    adapter = cd.adapter_for(composed, tmp_path / "home")
    observed = adapter.observe(graph.resources)["dashboard/team"]
    assert observed.health == "Degraded" and "report" in observed.message
    assert _ops(cd.plan_for(adapter, graph, "test"))["team"] == "unchanged"
    assert grafana.model("specd-team")["panels"] == []


def test_git_revert_republishes_the_earlier_dashboard(grafana, tmp_path):
    home = tmp_path / "home"
    first = cd.custom_dashboard("Team overview")
    repo = cd.write_repo(tmp_path / "repo", {"team": first}, grafana=_grafana_env(grafana.url))
    cd.reconcile(repo, home, "test", revision="1" * 40)
    original = grafana.model("specd-team")
    cd.write_repo(repo, {"team": cd.custom_dashboard("Team overview v2", "sum(rate(specd_service_requests_total[10m]))")})
    plan, _, _ = cd.reconcile(repo, home, "test", revision="2" * 40)
    assert _ops(plan)["team"] == "update" and grafana.model("specd-team")["title"] == "Team overview v2"
    cd.write_repo(repo, {"team": first})  # git revert
    plan, adapter, graph = cd.reconcile(repo, home, "test", revision="3" * 40)
    action = next(a for a in plan.actions if a.name == "team")
    assert action.op == Op.RESTORE and action.restore_from == "version 1", plan.to_text()
    restored = grafana.model("specd-team")
    assert restored["panels"] == original["panels"] and restored["title"] == "Team overview"
    assert restored["__specd"]["fingerprint"] == original["__specd"]["fingerprint"]
    assert grafana.dashboards["specd-team"]["versions"][-1]["message"].startswith("specd 333333333333")
    assert not cd.plan_for(adapter, graph, "test").has_changes


def test_removed_dashboard_is_orphaned_or_pruned(grafana, tmp_path):
    home = tmp_path / "home"
    repo = cd.write_repo(tmp_path / "repo", {"team": cd.custom_dashboard(), "old": cd.custom_dashboard("Old")}, grafana=_grafana_env(grafana.url))
    cd.reconcile(repo, home, "test")
    cd.write_repo(repo, {"team": cd.custom_dashboard()})
    plan, _, _ = cd.reconcile(repo, home, "test")
    assert _ops(plan)["old"] == "orphan" and "specd-old" in grafana.dashboards
    cd.write_repo(repo, {"team": cd.custom_dashboard()}, grafana=_grafana_env(grafana.url) | {"folder": "specd-test"})
    (repo / "environments" / "test.yaml").write_text((repo / "environments" / "test.yaml").read_text() + "prune: true\n")
    plan, _, _ = cd.reconcile(repo, home, "test")
    assert _ops(plan)["old"] == "delete" and "specd-old" not in grafana.dashboards
    assert not (home / "grafana" / "prometheus" / "rules" / "old.yml").exists()


# ---------------------------------------------------------------------- Grafana down or refusing
def test_grafana_down_is_transient_degraded_and_blocks_nothing(grafana, tmp_path):
    repo = cd.write_repo(tmp_path / "repo", {"team": cd.custom_dashboard()}, grafana=_grafana_env(grafana.url))
    cd.reconcile(repo, tmp_path / "home", "test")
    grafana.outage(503)
    composed, graph = cd.graph_of(repo, "test")
    adapter = cd.adapter_for(composed, tmp_path / "home")
    observed = adapter.observe(graph.resources)
    assert {o.health for o in observed.values()} == {"Degraded"} and "HTTP 503" in observed["dashboard/team"].message
    plan = cd.plan_for(adapter, graph, "test")
    assert {str(a.op) for a in plan.actions} == {"create"}, "nothing is deleted or orphaned on a guess"
    with pytest.raises(ApplyError) as caught:
        adapter.apply(plan.actions[0], graph.by_key()[plan.actions[0].key])
    assert caught.value.transient and "after 2 tries" in str(caught.value)
    grafana.outage(None)
    assert not cd.plan_for(cd.adapter_for(composed, tmp_path / "home"), graph, "test").has_changes


def test_grafana_unreachable_and_bad_token(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFANA_TOKEN", "wrong")
    with FakeGrafana(token=cd.TOKEN) as fake:
        repo = cd.write_repo(tmp_path / "repo", {"team": cd.custom_dashboard()}, grafana=_grafana_env(fake.url))
        composed, graph = cd.graph_of(repo, "test")
        adapter = cd.adapter_for(composed, tmp_path / "home")
        plan = cd.plan_for(adapter, graph, "test")
        with pytest.raises(ApplyError) as refused:
            adapter.apply(plan.actions[0], graph.by_key()[plan.actions[0].key])
        assert not refused.value.transient and "HTTP 401" in str(refused.value) and "wrong" not in str(refused.value)
    closed = f"http://127.0.0.1:{cd.free_port()}"
    repo = cd.write_repo(tmp_path / "repo2", {"team": cd.custom_dashboard()}, grafana=_grafana_env(closed))
    composed, graph = cd.graph_of(repo, "test")
    adapter = cd.adapter_for(composed, tmp_path / "home")
    assert "unreachable" in adapter.observe(graph.resources)["dashboard/team"].message
    with pytest.raises(ApplyError) as down:
        adapter.apply(plan.actions[0], graph.by_key()[plan.actions[0].key])
    assert down.value.transient


# ---------------------------------------------------------------------- embedded default: files
def test_files_are_written_observed_drift_restored_and_deleted(tmp_path):
    home = tmp_path / "home"
    repo = cd.write_repo(tmp_path / "repo", {"team": cd.custom_dashboard()})
    plan, adapter, graph = cd.reconcile(repo, home)
    root = home / "grafana"
    board = root / "dashboards" / "specd-dev" / "specd-team.json"
    model = json.loads(board.read_text())
    assert model["__specd"]["key"] == "dashboard/team" and model["__specd"]["fingerprint"] == graph.by_key()["dashboard/team"].fingerprint
    provider = (root / "provisioning" / "dashboards" / "specd-specd-dev.yaml").read_text()
    assert str(board.parent) in provider and "allowUiUpdates: false" in provider
    assert not cd.plan_for(adapter, graph).has_changes
    model["title"] = "edited on disk"
    board.write_text(json.dumps(model))
    assert _ops(cd.plan_for(adapter, graph))["team"] == "update"
    (root / "prometheus" / "prometheus.yml").unlink()
    assert _ops(cd.plan_for(adapter, graph))["platform"] == "update"
    cd.apply_all(adapter, graph, cd.plan_for(adapter, graph))
    assert json.loads(board.read_text())["title"] == "Team overview" and (root / "prometheus" / "prometheus.yml").is_file()
    assert not list(root.rglob("*.tmp"))
    cd.write_repo(repo, {})
    (repo / "environments" / "dev.yaml").write_text((repo / "environments" / "dev.yaml").read_text() + "prune: true\n")
    plan, _, _ = cd.reconcile(repo, home)
    assert _ops(plan)["team"] == "delete" and not board.exists() and not (root / "prometheus" / "rules" / "team.yml").exists()


def test_crash_after_the_rules_before_the_dashboard_converges_on_rerun(tmp_path, monkeypatch):
    from dashboards.files import FileStore

    home = tmp_path / "home"
    repo = cd.write_repo(tmp_path / "repo", {"team": cd.custom_dashboard()})
    cd.reconcile(repo, home)
    cd.write_repo(repo, {"team": cd.custom_dashboard("Team v2")})
    composed, graph = cd.graph_of(repo)
    adapter = cd.adapter_for(composed, home)
    plan = cd.plan_for(adapter, graph)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")  # as if kill -9 hit between the two writes

    monkeypatch.setattr(FileStore, "write_dashboard", crash)
    with pytest.raises(KeyboardInterrupt):
        cd.apply_all(adapter, graph, plan)
    monkeypatch.undo()
    rerun = cd.plan_for(adapter, graph)
    assert _ops(rerun)["team"] == "update", "the old marker still names the old fingerprint"
    cd.apply_all(adapter, graph, rerun)
    assert not cd.plan_for(adapter, graph).has_changes
