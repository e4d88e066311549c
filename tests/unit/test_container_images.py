"""Container images of services (issue 17, item 2) without building one: the `artifact.image` schema and
its errors with file, line and field; the tag (release + fingerprint) and the exact `bentos.build` and
`bentoml containerize` command lines; the record of a build, and that the rendered manifests name the
recorded image — for this service version only, so a revert brings the earlier image back. The real
build (buildah, a debootstrapped base, podman) is tests/e2e/test_container_image.py (opt-in)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from daemon.adapters.services import image as service_image
from daemon.cli.main import main
from daemon.core.manifests import default_image
from daemon.runtime.reconcile import context_for, load_desired
from daemon.schema.service import ServiceSpec
from daemon.shared.errors import ApplyError
from daemon.shared.images import (
    HISTORY,
    containerize_argv,
    image_tag,
    read_record,
    record_build,
    with_built_image,
)
from tests.conftest import ROOT
from tests.helpers.deploy import SERVICE_SPEC, apply_manifests, desired_at, example_repo, set_weights

REVISION = "0123456789abcdef0123456789abcdef01234567"
IMAGE_BLOCK = "artifact:\n  build: true\n  image: {backend: podman, base: localhost/specd-base:bookworm, preinstalled: true, options: {isolation: chroot}}\n"


@pytest.fixture(autouse=True)
def _no_registry_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPECD_REGISTRY", raising=False)


def _deployment_images(home: Path) -> set[str]:
    folder = home / "manifests" / "ml-prod" / "penguin-api"
    return {yaml.safe_load(p.read_text())["spec"]["template"]["spec"]["containers"][0]["image"] for p in folder.glob("deployment-*.yaml")}


def test_the_tag_is_the_release_plus_the_fingerprint() -> None:
    assert image_tag("penguin_sex:k3x9-1", "ab" * 32) == "k3x9-1-abababababab"
    assert image_tag(None, "cd" * 32) == "norelease-cdcdcdcdcdcd"
    odd = image_tag("m:" + "ü/x" * 80, "e" * 64)  # never an invalid tag, at most 128 characters
    assert len(odd) <= 128 and odd.endswith("-eeeeeeeeeeee") and all(c.isalnum() or c in "_.-" for c in odd)
    assert image_tag("penguin_sex:a", "1" * 64) != image_tag("penguin_sex:b", "1" * 64) != image_tag("penguin_sex:a", "2" * 64)


def test_the_containerize_command_line() -> None:
    argv = containerize_argv("/venv/bin/bentoml", "specd_penguin_api:abc", "localhost/specd/penguin-api:r-1-ffff", "buildah",
                             {"isolation": "chroot", "network": "none"})
    assert argv == ["/venv/bin/bentoml", "containerize", "specd_penguin_api:abc", "--backend", "buildah",
                    "--image-tag", "localhost/specd/penguin-api:r-1-ffff", "--opt", "isolation=chroot", "--opt", "network=none"]


def test_artifact_image_settings_and_env_defaults() -> None:
    desired = load_desired(ROOT, "prod", REVISION)
    service = desired.graph.by_key()["service/penguin_api"]
    assert "image" not in service.data["artifact"]  # no image: the normalised data (and every fingerprint) as before
    spec = ServiceSpec.model_validate({**service.data, "artifact": {"build": True, "image": {"backend": "podman", "options": {"isolation": "chroot"}}}})
    settings = service_image.build_settings(spec.artifact.image.model_dump(mode="json"), desired.composed.env)
    assert settings == {"base": None, "backend": "podman", "options": {"isolation": "chroot"}, "preinstalled": False}
    env = desired.composed.env.model_copy(update={"images": desired.composed.env.images.model_copy(
        update={"base": "registry.example/base:1", "options": {"isolation": "chroot", "layers": "true"}, "preinstalled": True})})
    assert service_image.build_settings({"options": {"layers": "false"}}, env) == {
        "base": "registry.example/base:1", "backend": "buildah", "options": {"isolation": "chroot", "layers": "false"}, "preinstalled": True}


@pytest.mark.parametrize(("block", "field", "message"), [
    ("artifact:\n  image: {backend: podman}\n", "artifact", "set build: true"),
    ("artifact:\n  build: true\n  image: {backend: docker}\n", "artifact.image.backend", "'buildah' or 'podman'"),
    ("artifact:\n  build: true\n  image: {name: Not/Lower}\n", "artifact.image.name", "should match pattern"),
    ("artifact:\n  build: true\n  image: {options: {--network: host}}\n", "artifact.image.options", "should match pattern"),
])
def test_bad_artifact_image_is_an_error_with_file_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture, block: str,
                                                                 field: str, message: str) -> None:
    repo = example_repo(tmp_path / "repo")
    spec = repo.path / SERVICE_SPEC
    spec.write_text(spec.read_text() + block)
    assert main(["validate", "--repo", str(repo.path), "--env", "prod", "--home", str(tmp_path / "home")]) == 1
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(spec.read_text().splitlines(), 1) if text.startswith("artifact:"))
    assert f"{SERVICE_SPEC}:" in err and field in err and message in err, err
    assert any(f"{SERVICE_SPEC}:{n}: {field}" in err for n in range(line, line + 3)), err


def test_env_images_section_is_validated(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["validate", "--repo", str(ROOT), "--env", "prod", "--home", str(tmp_path / "h"), "-o", "env.images.backend=docker"])
    assert code == 1 and "images.backend" in capsys.readouterr().err
    assert main(["validate", "--repo", str(ROOT), "--env", "prod", "--home", str(tmp_path / "h"),
                 "-o", "env.images.base=localhost/specd-base:bookworm"]) == 0


def test_manifests_name_the_recorded_image_of_this_service_version_and_a_revert_restores_it(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    home = tmp_path / "home"
    apply_manifests(repo, home)
    service = desired_at(repo).graph.by_key()["service/penguin_api"]
    default = default_image("penguin_api", service.data, desired_at(repo).composed.env)
    assert _deployment_images(home) == {default}  # nothing built: today's reference (the golden files)

    built = "localhost/specd/penguin-api:k3x9-1-" + service.fingerprint[:12]
    record_build(home, "penguin_api", default, {"image": built, "release": "penguin_sex:k3x9-1", "fingerprint": service.fingerprint})
    rebuilt = apply_manifests(repo, home)  # the record is observed as drift: the manifests move to the image
    action = next(a for a in rebuilt.changes if a.kind == "manifests")
    assert f"image {default} → {built}" in action.reason
    assert _deployment_images(home) == {built}
    assert not [a for a in apply_manifests(repo, home).changes if a.kind == "manifests"]  # converged

    set_weights(repo, 50, 50)  # a new service version: no image built for it yet, so its own default
    shift = repo.commit("50/50")
    apply_manifests(repo, home)
    (shifted,) = _deployment_images(home)
    assert shifted != built and shifted == default_image("penguin_api", desired_at(repo).graph.by_key()["service/penguin_api"].data,
                                                         desired_at(repo).composed.env)
    repo.git("revert", "--no-edit", shift)
    apply_manifests(repo, home)
    assert _deployment_images(home) == {built}  # the earlier version's image again


def test_render_uses_the_recorded_image_from_the_state_home(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    home = tmp_path / "home"
    home.mkdir()
    desired = desired_at(repo)
    data = next(r for r in desired.graph.resources if r.kind == "manifests").data
    record_build(home, "penguin_api", data["image"], {"image": "localhost/specd/penguin-api:r-1-abc"})
    assert with_built_image(data, None) is data and with_built_image(data, home)["image"] == "localhost/specd/penguin-api:r-1-abc"
    out = tmp_path / "out"
    assert main(["render", "--repo", str(repo.path), "--env", "prod", "--home", str(home), "--out", str(out)]) == 0
    deployment = yaml.safe_load((out / "ml-prod/penguin-api/deployment-penguin-api-champion.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "localhost/specd/penguin-api:r-1-abc"


def test_the_record_keeps_the_last_versions_and_survives_a_torn_file(tmp_path: Path) -> None:
    for i in range(HISTORY + 5):
        record_build(tmp_path, "svc", f"r/svc:v{i}", {"image": f"r/svc:t{i}"})
    builds = read_record(tmp_path, "svc")
    assert len(builds) == HISTORY and "r/svc:v0" not in builds and builds[f"r/svc:v{HISTORY + 4}"]["image"] == f"r/svc:t{HISTORY + 4}"
    (tmp_path / "images" / "svc.json").write_text('{"builds": {"r/svc:v1": ')  # torn (not by specd: it renames whole files)
    assert read_record(tmp_path, "svc") == {}


class _Recorder:
    def __init__(self, fail: str | None = None):
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, argv: list[str], env: dict[str, str], timeout: float, what: str, name: str, cwd: Path | None = None) -> str:
        self.calls.append(argv)
        if self.fail and self.fail in what:
            raise ApplyError(f"service {name}: {what} failed (exit 125):\nError: creating build container")
        assert env["BENTOML_HOME"].endswith("bentoml")
        return "building...\nspecd_penguin_api:0123456789abcdef-1a2b3c4d\n" if argv[1:3] == ["-m", "bentos.build"] else ""


class _Routing:
    def __init__(self, tags: dict[str, tuple[str, str | None]]):
        from bentos.routing import Variant

        self.variants = tuple(Variant(name, tag, 0.5, role) for name, (tag, role) in tags.items())


def _with_image(tmp_path: Path, block: str = IMAGE_BLOCK):
    repo = example_repo(tmp_path / "repo")
    spec = repo.path / SERVICE_SPEC
    spec.write_text(spec.read_text() + block)
    repo.commit("build an image")
    desired = desired_at(repo)
    return desired, desired.graph.by_key()["service/penguin_api"], context_for(desired, tmp_path / "home")


def test_build_image_runs_bento_build_then_containerize_and_records_the_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    desired, service, ctx = _with_image(tmp_path)
    runs = _Recorder()
    monkeypatch.setattr(service_image, "_run", runs)
    routing = _Routing({"challenger": ("penguin_sex:c-2", "challenger"), "champion": ("penguin_sex:k3x9-1", "champion")})
    note, entry = service_image.build_image(ctx, "penguin_api", service, tmp_path / "routing.json", routing)
    image = f"localhost/specd/penguin-api:k3x9-1-{service.fingerprint[:12]}"
    assert runs.calls == [
        [sys.executable, "-m", "bentos.build", str(tmp_path / "routing.json"), "--base-image", "localhost/specd-base:bookworm", "--preinstalled"],
        [service_image.bentoml_cli(), "containerize", "specd_penguin_api:0123456789abcdef-1a2b3c4d", "--backend", "podman",
         "--image-tag", image, "--opt", "isolation=chroot", "--opt", "label=specd.bento=specd_penguin_api:0123456789abcdef-1a2b3c4d",
         "--opt", f"label=specd.fingerprint={service.fingerprint}", "--opt", f"label=specd.git_sha={desired.revision}",
         "--opt", "label=specd.release=penguin_sex:k3x9-1", "--opt", "label=specd.service=penguin_api"],
    ]
    assert entry["image"] == image and entry["release"] == "penguin_sex:k3x9-1" and entry["bento"].startswith("specd_penguin_api:")
    assert image in note and "podman" in note
    record = json.loads((ctx.home / "images" / "penguin_api.json").read_text())  # the lineage of the image
    assert record["builds"][default_image("penguin_api", service.data, desired.composed.env)]["image"] == image
    assert record["builds"][default_image("penguin_api", service.data, desired.composed.env)]["revision"] == desired.revision


def test_a_failed_containerize_fails_the_action_and_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, service, ctx = _with_image(tmp_path)
    monkeypatch.setattr(service_image, "_run", _Recorder(fail="containerize"))
    with pytest.raises(ApplyError, match="containerize --backend podman failed"):
        service_image.build_image(ctx, "penguin_api", service, tmp_path / "routing.json", _Routing({"champion": ("penguin_sex:a", "champion")}))
    assert read_record(ctx.home, "penguin_api") == {}


def test_a_pinned_deploy_image_tag_is_built_but_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    _, service, ctx = _with_image(tmp_path)
    monkeypatch.setattr(service_image, "_run", _Recorder())
    pinned = replace(service, data={**service.data, "deploy": {**service.data["deploy"], "image": {"repository": None, "tag": "pinned-1"}}})
    _, entry = service_image.build_image(ctx, "penguin_api", pinned, tmp_path / "routing.json", _Routing({"champion": ("penguin_sex:a", "champion")}))
    assert entry["image"].endswith("a-" + service.fingerprint[:12]) and read_record(ctx.home, "penguin_api") == {}


def test_a_service_on_kubernetes_with_an_image_is_drift_until_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.adapters.services.adapter import ServiceAdapter

    desired, service, ctx = _with_image(tmp_path)
    adapter = ServiceAdapter(ctx)
    assert adapter.observe([service])["service/penguin_api"].drift == ("image not built for this service version",)
    record_build(ctx.home, "penguin_api", default_image("penguin_api", service.data, desired.composed.env),
                 {"image": "localhost/specd/penguin-api:x", "fingerprint": "other"})
    assert adapter.observe([service])["service/penguin_api"].drift == ("image built for another fingerprint",)
    record_build(ctx.home, "penguin_api", default_image("penguin_api", service.data, desired.composed.env),
                 {"image": "localhost/specd/penguin-api:x", "fingerprint": service.fingerprint})
    assert adapter.observe([service])["service/penguin_api"].drift == ()  # no model release here to compare with
