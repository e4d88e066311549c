"""A service version as a container image: `bentos.build`, then `bentoml containerize` with buildah or podman.

Why in the service apply: the image holds exactly what the routing serves (the release's model tags
and the service code), so it is built right after that routing is resolved — for a local service once
it is live, for one on Kubernetes before its `manifests/<name>` (a later wave) names the image. The tag
is the model release plus the service fingerprint, and the build is recorded (`daemon.shared.images`)
only after `bentoml containerize` succeeded: the manifests never name an image that was not built, and a
kill -9 mid-build just builds again on the next apply. A failed build fails the action with the
backend's last lines (a cluster cannot run a service without its image).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.core.manifests import default_image
from daemon.shared.errors import ApplyError
from daemon.shared.images import build_settings, containerize_argv, image_repository, image_tag, record_build
from daemon.shared.paths import bentoml_home
from daemon.shared.scrub import scrub

if TYPE_CHECKING:
    from daemon.adapters.base import AdapterContext
    from daemon.core.graph import Resource

CODE_ROOT = Path(__file__).resolve().parents[3]
BENTO_TIMEOUT_S = 900.0


def bentoml_cli() -> str:
    """The `bentoml` executable of this interpreter's environment (the one that built the bento)."""
    beside = Path(sys.executable).parent / "bentoml"
    return str(beside) if beside.is_file() else (shutil.which("bentoml") or "bentoml")


def release_of(routing: Any) -> str | None:
    """The model release a routing serves: its champion's tag, else its first variant's."""
    variants = list(routing.variants)
    champion = next((v for v in variants if v.role == "champion"), None)
    return (champion or (variants[0] if variants else None)).model_tag if variants else None


def plan_image(ctx: AdapterContext, name: str, resource: Resource, routing: Any) -> dict[str, Any]:
    """Everything about the image of this service version, without building anything."""
    spec = resource.spec
    settings = spec.artifact.image.model_dump(mode="json") if spec.artifact.image is not None else {}
    effective = build_settings(settings, ctx.env)
    release = release_of(routing)
    image = f"{image_repository(name, settings, ctx.env)}:{image_tag(release, resource.fingerprint)}"
    pinned = (resource.data.get("deploy") or {}).get("image", {}).get("tag") is not None
    return {"image": image, "release": release, "fingerprint": resource.fingerprint, "revision": ctx.revision,
            "default_image": None if pinned else default_image(name, resource.data, ctx.env), **effective}


def bento_argv(routing_file: Path, plan: dict[str, Any]) -> list[str]:
    argv = [sys.executable, "-m", "bentos.build", str(routing_file)]
    if plan.get("base"):
        argv += ["--base-image", str(plan["base"])]
        if plan.get("preinstalled"):
            argv.append("--preinstalled")
    return argv


def _run(argv: list[str], env: dict[str, str], timeout: float, what: str, name: str, cwd: Path = CODE_ROOT) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(cwd), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ApplyError(f"service {name}: {what} did not finish within {timeout:.0f} s", transient=True) from None
    except OSError as exc:
        raise ApplyError(f"service {name}: {what} could not start: {exc}") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise ApplyError(f"service {name}: {what} failed (exit {result.returncode}):\n{scrub(tail)}")
    return result.stdout


def build_image(ctx: AdapterContext, name: str, resource: Resource, routing_file: Path, routing: Any) -> tuple[str, dict[str, Any]]:
    """Build the bento and its image, record the image for the manifests; (outcome note, record entry)."""
    plan = plan_image(ctx, name, resource, routing)
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home(ctx.home)), "BENTOML_DO_NOT_TRACK": "True"}
    out = _run(bento_argv(routing_file, plan), env, BENTO_TIMEOUT_S, "bento build", name)
    bento = out.strip().splitlines()[-1]
    labels = {"specd.service": name, "specd.fingerprint": resource.fingerprint, "specd.git_sha": ctx.revision,
              "specd.release": plan["release"] or "", "specd.bento": bento}
    argv = containerize_argv(bentoml_cli(), bento, plan["image"], plan["backend"], plan["options"], labels)
    # BentoML copies the bento to a temporary build context and insists that a custom Dockerfile template
    # in it lies under the working directory (and under no dot folder): both are this scratch folder.
    with tempfile.TemporaryDirectory(prefix="specd-containerize-") as scratch:
        _run(argv, {**env, "TMPDIR": scratch}, ctx.env.images.timeout_s, f"bentoml containerize --backend {plan['backend']}", name,
             cwd=Path(scratch))
    entry = {k: v for k, v in plan.items() if k != "default_image"} | {"bento": bento}
    if plan["default_image"] is not None:  # a pinned deploy.image.tag keeps naming what it pins
        entry = record_build(ctx.home, name, plan["default_image"], entry)
    return f"image {plan['image']} (bento {bento}, {plan['backend']})", entry
