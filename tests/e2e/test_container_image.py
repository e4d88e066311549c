"""Opt-in e2e (SPECD_E2E_CONTAINERS=1; minutes, not in the default CI): a service version as a real image.

The service adapter deploys the example A/B service with `artifact: {build: true, image: ...}`: it serves
it with `bentoml serve` here and builds its image with `bentoml containerize --backend buildah` from a
base built without any registry (`.ci/container-base`: debootstrap + this machine's Python environment
at /app/.venv, `preinstalled: true`). Then podman runs the image on 127.0.0.1 and `/predict` must answer
exactly like the local `bentoml serve` for the same payloads; the container is removed at the end.

Run here (README "Container images"): `bash .ci/container-packages && bash .ci/container-base` once, then
`SPECD_E2E_CONTAINERS=1 .venv/bin/python -m pytest -q tests/e2e/test_container_image.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import services as cs

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.environ.get("SPECD_E2E_CONTAINERS") != "1",
                                                  reason="opt-in: SPECD_E2E_CONTAINERS=1 (needs buildah, podman, runc; see README)")]

ROOT = Path(__file__).resolve().parents[2]
BASE = os.environ.get("SPECD_E2E_BASE_IMAGE", "localhost/specd-base:bookworm")
STORAGE = {"STORAGE_DRIVER": os.environ["STORAGE_DRIVER"]} if os.environ.get("STORAGE_DRIVER") else {}  # vfs without overlayfs
# crun cannot set rlimits here ("cgroups in hybrid mode"): runc, cgroupfs and explicit ulimits work.
BUILDAH_ROOT, BUILDAH_RUNROOT = "/var/lib/containers/storage", "/run/containers/storage"  # buildah's default (root) store
PODMAN_RUN = ["--runtime", "runc", "--cgroup-manager=cgroupfs", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]


def _sh(*argv: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **STORAGE})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def base_image() -> str:
    if _sh("buildah", "inspect", "--type", "image", BASE, check=False).returncode != 0:
        _sh("bash", str(ROOT / ".ci" / "container-base"), BASE, timeout=1800)
    return BASE


def _wait_ready(url: str, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} not ready within {timeout} s")


def test_the_image_of_a_service_answers_like_bentoml_serve(tmp_path: Path, base_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    for key, value in STORAGE.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    models = cs.make_models(home)
    cs.release(home, "m1", models["a"], (models["b"],))
    spec = cs.service_spec(cs.free_port(), workers=1, prediction_log={"enabled": False},
                           artifact={"build": True, "image": {"base": base_image, "preinstalled": True, "backend": "buildah",
                                                              "options": {"isolation": "chroot"}}})
    resource = cs.resource(spec, "e2e0" * 16)
    adapter = cs.adapter(home, revision="cafe" * 10)
    container = f"specd-e2e-{os.getpid()}"
    image = None
    podman: list[str] = []
    try:
        outcome = cs.deploy(adapter, resource)
        image = outcome.details["image"]["image"]
        assert image == f"localhost/specd/penguin-api:{models['a'].split(':', 1)[1]}-{resource.fingerprint[:12]}"
        record = json.loads((home / "images" / "penguin_api.json").read_text())
        assert [b["image"] for b in record["builds"].values()] == [image]  # recorded for the manifests
        labels = json.loads(_sh("buildah", "inspect", "--type", "image", image).stdout)["OCIv1"]["config"]["Labels"]
        assert labels.get("specd.fingerprint") == resource.fingerprint  # the bento's labels travel into the image

        port = cs.free_port()
        # podman gets a private store (removed below) and copies the image from the one buildah wrote:
        # a shared store would tie the test to whichever graph driver podman first used on this host.
        store = Path(tempfile.mkdtemp(prefix="specd-pm-", dir="/tmp"))  # podman wants a runroot under 50 characters
        podman = ["podman", "--root", str(store / "root"), "--runroot", str(store / "run"), "--storage-driver", "overlay"]
        source = f"containers-storage:[overlay@{BUILDAH_ROOT}+{BUILDAH_RUNROOT}]{image}"
        _sh(*podman, "run", "-d", "--name", container, *PODMAN_RUN, "-p", f"127.0.0.1:{port}:3000", source, timeout=1200)
        local, boxed = f"http://127.0.0.1:{spec.port}", f"http://127.0.0.1:{port}"
        _wait_ready(boxed)
        payloads = [{"features": cs.ROW, "user_id": f"u{i}"} for i in range(6)] + [{"instances": [cs.ROW, {**cs.ROW, "year": 2009}], "user_id": "batch"}]  # sticky: the same variant both sides
        for body in payloads:
            a = httpx.post(local + "/predict", json=body, timeout=30)
            b = httpx.post(boxed + "/predict", json=body, timeout=30)
            assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
            here, there = a.json(), b.json()
            assert here.pop("request_id") and there.pop("request_id")  # a fresh id per request, the rest identical
            assert here == there, (body, here, there)
            assert {"variant", "model_version"} <= set(here) and ("prediction" in here or "predictions" in here)
    finally:
        if podman:
            _sh(*podman, "rm", "-f", container, check=False)
            _sh("umount", f"{podman[2]}/overlay", check=False)  # the overlay driver bind-mounts its own folder
            shutil.rmtree(podman[2].rsplit("/", 1)[0], ignore_errors=True)
        adapter.supervisor.stop("penguin_api")
        if image:
            _sh("buildah", "rmi", image, check=False)
