"""Kubernetes deploy target: golden manifests of the example service, offline schema validation for two
Kubernetes versions, HTTPRoute weights after a PR that shifts traffic, revert, hand edits and half-written
folders, `specd render --branch`, and spec errors with file, line and field."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from daemon.adapters.k8s_schemas import validate_files
from daemon.cli.main import main
from daemon.core.manifests import per_mille, render, render_files
from daemon.runtime.reconcile import load_desired
from tests.conftest import ROOT
from tests.helpers.deploy import (
    apply_manifests,
    desired_at,
    example_repo,
    folder_files,
    golden,
    route_weights,
    set_weights,
    without_sha,
)

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _no_registry_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPECD_REGISTRY", raising=False)


def _example(env: str = "prod"):
    desired = load_desired(ROOT, env, REVISION)
    return next(r for r in desired.graph.resources if r.kind == "manifests")


def test_golden_manifests_of_the_example_service() -> None:
    resource = _example()
    files = render_files(resource.data, "f" * 64, REVISION)
    assert sorted(files) == ["configmap-penguin-api-routing.yaml", "deployment-penguin-api-challenger.yaml",
                             "deployment-penguin-api-champion.yaml", "hpa-penguin-api-challenger.yaml", "hpa-penguin-api-champion.yaml",
                             "httproute-penguin-api.yaml", "service-penguin-api-challenger.yaml", "service-penguin-api-champion.yaml"]
    for name, text in files.items():
        golden(f"manifests/prod/penguin_api/{name}", text)
    assert render_files(resource.data, "f" * 64, REVISION) == files  # deterministic


def test_dev_keeps_the_local_target_and_prod_renders() -> None:
    assert not [r for r in load_desired(ROOT, "dev", REVISION).graph.resources if r.kind == "manifests"]
    resource = _example()
    assert resource.path == "specs/services/penguin_api.yaml"  # errors point at the service file
    assert resource.data["namespace"] == "ml-prod" and resource.data["image"].startswith("localhost/specd/penguin-api:v")


@pytest.mark.parametrize("version", ["1.29", "1.31"])
def test_rendered_manifests_pass_the_pinned_kubernetes_schemas(version: str) -> None:
    objects = render(_example().data, "f" * 64, REVISION)
    assert validate_files(objects, [version]) == []
    assert {o["kind"] for o in objects.values()} == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "HTTPRoute"}
    broken = copy.deepcopy(objects)
    deployment = broken["deployment-penguin-api-champion.yaml"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"  # a typo (strict schemas)
    broken["hpa-penguin-api-champion.yaml"]["spec"]["minReplicas"] = "two"
    broken["httproute-penguin-api.yaml"]["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    problems = validate_files(broken, [version])
    files = sorted({name for name, _ in problems})
    assert files == ["deployment-penguin-api-champion.yaml", "hpa-penguin-api-champion.yaml", "httproute-penguin-api.yaml"], problems
    assert any("paht" in p for _, p in problems) and any(p.startswith(f"Kubernetes {version}: spec.minReplicas") for _, p in problems)
    for name, obj in [*objects.items(), *broken.items()]:  # the cached validators agree with the library's own validate()
        if obj["kind"] == "HTTPRoute":
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            library = []
        except kubernetes_validate.ValidationError as exc:
            library = [exc.message]
        assert bool(library) == bool(validate_files({name: obj}, [version])), (name, library)


def test_weights_are_per_mille_summing_to_1000() -> None:
    assert per_mille({"a": 1, "b": 1, "c": 1}) == {"a": 334, "b": 333, "c": 333}
    assert per_mille({"champion": 90, "challenger": 10}) == {"champion": 900, "challenger": 100}
    assert sum(per_mille({"a": 0.1234, "b": 0.5, "c": 0.3766}).values()) == 1000


def test_pr_shifting_traffic_then_revert_restores_the_manifests(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    home = tmp_path / "home"
    first = apply_manifests(repo, home)
    assert [(a.key, str(a.op)) for a in first.changes if a.kind == "manifests"] == [("manifests/penguin_api", "create")]
    folder = home / "manifests" / "ml-prod" / "penguin-api"
    before = folder_files(folder)
    assert route_weights(folder) == {"penguin-api-champion": 900, "penguin-api-challenger": 100}

    set_weights(repo, 70, 30)  # the pull request
    shift = repo.commit("shift traffic to the challenger")
    pr_plan = apply_manifests(repo, home)
    action = next(a for a in pr_plan.changes if a.kind == "manifests")
    assert str(action.op) == "update"
    assert "variants[champion].weight: 900 → 700" in pr_plan.property_changes[action.key]
    weights = desired_at(repo).graph.by_key()["service/penguin_api"].spec.normalised_weights()
    assert route_weights(folder) == {f"penguin-api-{name}": round(1000 * w) for name, w in weights.items()}  # = the service's weights
    assert all(yaml.safe_load(t)["metadata"]["annotations"]["specd.io/git-sha"] == shift for t in folder_files(folder).values())

    repo.git("revert", "--no-edit", shift)
    apply_manifests(repo, home)
    after = folder_files(folder)
    assert without_sha(after) == without_sha(before)  # the earlier manifests, labelled with the revert's sha
    assert route_weights(folder) == {"penguin-api-champion": 900, "penguin-api-challenger": 100}
    assert [str(a.op) for a in apply_manifests(repo, home).actions if a.kind == "manifests"] == ["unchanged"]


def test_hand_edits_and_half_written_folders_are_drift_that_apply_repairs(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    home = tmp_path / "home"
    apply_manifests(repo, home)
    folder = home / "manifests" / "ml-prod" / "penguin-api"
    good = folder_files(folder)
    route = folder / "httproute-penguin-api.yaml"
    route.write_text(route.read_text().replace("weight: 900", "weight: 1000"))  # edited by hand
    (folder / "hpa-penguin-api-challenger.yaml").unlink()  # a kill -9 between two files
    (folder / "extra.yaml").write_text("kind: ConfigMap\n")
    repair = apply_manifests(repo, home)
    action = next(a for a in repair.actions if a.kind == "manifests")
    assert str(action.op) == "update" and "httproute-penguin-api.yaml" in action.reason and "extra.yaml" in action.reason
    assert folder_files(folder) == good
    (folder / "configmap-penguin-api-routing.yaml").unlink()  # killed before the ConfigMap (written last)
    action = next(a for a in apply_manifests(repo, home).actions if a.kind == "manifests")
    assert (str(action.op), action.reason) == ("update", "spec changed; manifests unreadable")
    assert folder_files(folder) == good


def test_render_to_a_branch_commits_only_changes_and_a_revert_restores(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    repo = example_repo(tmp_path / "repo")
    args = ["render", "--repo", str(repo.path), "--env", "prod", "--home", str(tmp_path / "home"), "--branch", "deploy/prod"]
    assert main(args) == 0
    first_tree = repo.git("ls-tree", "-r", "deploy/prod")
    assert "ml-prod/penguin-api/httproute-penguin-api.yaml" in first_tree
    assert main(args) == 0 and "unchanged" in capsys.readouterr().out  # nothing new: no commit
    assert repo.git("rev-list", "--count", "deploy/prod") == "1"
    set_weights(repo, 50, 50)
    shift = repo.commit("50/50")
    assert main(args) == 0
    route = yaml.safe_load(repo.git("show", "deploy/prod:ml-prod/penguin-api/httproute-penguin-api.yaml"))
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [500, 500]
    repo.git("revert", "--no-edit", shift)
    assert main(args) == 0
    assert repo.git("rev-list", "--count", "deploy/prod") == "3"
    files = repo.git("ls-tree", "-r", "--name-only", "deploy/prod").splitlines()
    now = {f: repo.git("show", f"deploy/prod:{f}") for f in files}
    then = {f: repo.git("show", f"deploy/prod~2:{f}") for f in files}
    assert without_sha(now) == without_sha(then)
    assert repo.git("status", "--porcelain") == ""  # the user's checkout is untouched

    out = tmp_path / "out"
    assert main(["render", "--repo", str(repo.path), "--env", "prod", "--home", str(tmp_path / "home"), "--out", str(out)]) == 0
    assert {p.name for p in (out / "ml-prod" / "penguin-api").glob("*.yaml")} == {f.rsplit("/", 1)[1] for f in files}


def test_bad_deploy_blocks_are_errors_with_file_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    repo = example_repo(tmp_path / "repo")
    spec = repo.path / "specs/services/penguin_api.yaml"
    spec.write_text(spec.read_text().replace("autoscaling: {min: 2, max: 8, target_cpu: 70}", "autoscaling: {min: 9, max: 8, target_cpu: 70}"))
    assert main(["validate", "--repo", str(repo.path), "--env", "prod", "--home", str(tmp_path / "home")]) == 1
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(spec.read_text().splitlines(), 1) if "autoscaling:" in text)
    assert f"specs/services/penguin_api.yaml:{line}: deploy.autoscaling" in err and "min (9) is above max (8)" in err
    spec.write_text(spec.read_text().replace("min: 9", "min: 2").replace("memory: 512Mi", "memory: lots"))
    assert main(["validate", "--repo", str(repo.path), "--env", "prod", "--home", str(tmp_path / "home")]) == 1
    assert "deploy.resources.requests.memory" in capsys.readouterr().err


def test_a_variant_pod_serves_only_its_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bentos.routing import VARIANT_ENV, Routing, Variant, read_routing, write_routing

    objects = render(_example().data, "f" * 64, REVISION)
    env = {e["name"]: e.get("value") for e in objects["deployment-penguin-api-challenger.yaml"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[VARIANT_ENV] == "challenger"  # the contract between the renderer and the service
    path = tmp_path / "routing.json"
    write_routing(path, Routing("penguin_api", "fp", "rev", "penguin_sex", (Variant("champion", "penguin_sex:a-1", 0.9, "champion"),
                                Variant("challenger", "penguin_sex:b-2", 0.1, "challenger")), "user_id", None, {}))
    assert [v.weight for v in read_routing(path).variants] == [0.9, 0.1]
    monkeypatch.setenv(VARIANT_ENV, "challenger")
    pinned = read_routing(path)
    assert [(v.name, v.model_tag, v.weight) for v in pinned.variants] == [("challenger", "penguin_sex:b-2", 1.0)]
    assert pinned.choose("any-user").name == "challenger"
    monkeypatch.setenv(VARIANT_ENV, "nope")
    with pytest.raises(ValueError, match="'nope' is not a variant of service 'penguin_api'"):
        read_routing(path)


def test_a_service_on_kubernetes_runs_no_local_process(tmp_path: Path) -> None:
    from daemon.adapters.services.adapter import ON_KUBERNETES, ServiceAdapter
    from daemon.core.plan import Action, Op
    from daemon.runtime.reconcile import context_for

    desired = load_desired(ROOT, "prod", REVISION)
    service = desired.graph.by_key()["service/penguin_api"]
    adapter = ServiceAdapter(context_for(desired, tmp_path / "home"))
    live = adapter.observe([service])["service/penguin_api"]
    assert (live.exists, live.fingerprint, live.health, live.drift) == (True, service.fingerprint, "Healthy", ())
    assert "on Kubernetes (manifests/penguin_api); no local process" in adapter.describe(Action("service", "penguin_api", Op.UPDATE, ""), service)
    routing = adapter.supervisor.routing_file("penguin_api")  # a local copy left from when the target was local
    routing.parent.mkdir(parents=True)
    routing.write_text("{}")
    assert adapter.observe([service])["service/penguin_api"].drift == (ON_KUBERNETES,)
    outcome = adapter.apply(Action("service", "penguin_api", Op.UPDATE, ON_KUBERNETES), service)
    assert "served on Kubernetes" in outcome.message and not routing.exists()
    assert adapter.observe([service])["service/penguin_api"].drift == ()
    dev = load_desired(ROOT, "dev", REVISION)  # the same spec in dev: the local process as before
    assert not ServiceAdapter(context_for(dev, tmp_path / "home")).on_kubernetes(dev.graph.by_key()["service/penguin_api"].spec)


def test_the_manifests_dir_cannot_escape_the_state_home(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["validate", "--repo", str(ROOT), "--env", "prod", "--home", str(tmp_path / "h"), "-o", "env.deploy.manifests_dir=../../etc"])
    assert code == 1 and "must be an absolute path or a relative one inside the state home" in capsys.readouterr().err
