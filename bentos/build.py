"""`python -m bentos.build ROUTING_FILE`: a versioned, containerisable bento of one service version.

The bento holds the service code (bentos/, daemon/, flows/), the routing file as `routing.json` (pointed
to by `SPECD_ROUTING_FILE` inside the bento) and every model the routing serves, so `bentoml
containerize specd_<service>:<version>` gives an image that serves exactly this service version. Labels
carry the git sha and the fingerprints. Slow (tens of seconds): the adapter runs it after the service
is live, and only when the spec asks for it (`artifact.build: true`).

`--base-image REF` makes the Dockerfile start from REF instead of BentoML's python image (no registry
needs to be reachable when REF is local); `--preinstalled` also skips installing the bento's Python
packages (REF holds them at /app/.venv: `bentos/docker/preinstalled.j2`). Both shape the image, not the
service, so they become part of the bento version.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import shutil
import tempfile
from pathlib import Path

from bentos.routing import read_routing

CODE_ROOT = Path(__file__).resolve().parent.parent
BENTO_ROUTING = "/home/bentoml/bento/src/routing.json"  # where BentoML containers put the build context


TEMPLATE = Path(__file__).resolve().parent / "docker" / "preinstalled.j2"


def build(routing_file: Path, base_image: str | None = None, preinstalled: bool = False) -> str:
    import bentoml
    from bentoml._internal.bento.build_config import BentoEnvSchema

    routing = read_routing(routing_file)
    version = f"{routing.fingerprint[:16]}"
    if base_image:
        version += "-" + hashlib.sha256(f"{base_image}|{preinstalled}".encode()).hexdigest()[:8]
    name = f"specd_{routing.service}".replace("-", "_")
    try:
        return str(bentoml.bentos.get(f"{name}:{version}").tag)  # same fingerprint: already built
    except bentoml.exceptions.NotFound:
        pass
    labels = {"specd.service": routing.service, "specd.fingerprint": routing.fingerprint,
              "specd.git_sha": routing.revision, "specd.model": routing.model}
    labels.update({f"specd.variant.{v.name}": v.model_tag.replace(":", "_") for v in routing.variants})
    with tempfile.TemporaryDirectory() as scratch:
        context = Path(scratch)
        for package in ("bentos", "daemon", "flows"):
            shutil.copytree(CODE_ROOT / package, context / package, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copyfile(routing_file, context / "routing.json")
        docker: dict[str, str] = {}
        if base_image:
            docker["base_image"] = base_image
            if preinstalled:  # relative to the build context, which BentoML wants as the working directory too
                shutil.copyfile(TEMPLATE, context / "Dockerfile.j2")
                docker["dockerfile_template"] = "Dockerfile.j2"
        with contextlib.chdir(context):
            bento = bentoml.bentos.build(
                "bentos.ab_service:ABService",
                name=name,
                version=version,
                labels=labels,
                description=f"specd service {routing.service} at {routing.revision[:12]}",
                include=["bentos/**/*.py", "daemon/**/*.py", "flows/**/*.py", "routing.json"],
                envs=[BentoEnvSchema(name="SPECD_ROUTING_FILE", value=BENTO_ROUTING)],
                python={"packages": ["torch", "numpy", "pydantic", "pydantic-settings", "deltalake", "pyarrow", "PyYAML", "orjson",
                                  "uvloop", "httptools"]},  # uvicorn picks them (pyproject.toml)
                models=sorted({v.model_tag for v in routing.variants}),
                build_ctx=str(context),
                docker=docker or None,
            )
    return str(bento.tag)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bentos.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("routing_file", type=Path)
    parser.add_argument("--base-image", default=None, help="start the image's Dockerfile from this image")
    parser.add_argument("--preinstalled", action="store_true", help="with --base-image: it holds the Python environment at /app/.venv")
    args = parser.parse_args()
    print(build(args.routing_file, args.base_image, args.preinstalled))
