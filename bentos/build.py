"""`python -m bentos.build ROUTING_FILE`: a versioned, containerisable bento of one service version.

The bento holds the service code (bentos/, daemon/, flows/), the routing file as `routing.json` (pointed
to by `SPECD_ROUTING_FILE` inside the bento) and every model the routing serves, so `bentoml
containerize specd_<service>:<version>` gives an image that serves exactly this service version. Labels
carry the git sha and the fingerprints. Slow (tens of seconds): the adapter runs it after the service
is live, and only when the spec asks for it (`artifact.build: true`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from bentos.routing import read_routing

CODE_ROOT = Path(__file__).resolve().parent.parent
BENTO_ROUTING = "/home/bentoml/bento/src/routing.json"  # where BentoML containers put the build context


def build(routing_file: Path) -> str:
    import bentoml
    from bentoml._internal.bento.build_config import BentoEnvSchema

    routing = read_routing(routing_file)
    version = f"{routing.fingerprint[:16]}"
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
        bento = bentoml.bentos.build(
            "bentos.ab_service:ABService",
            name=name,
            version=version,
            labels=labels,
            description=f"specd service {routing.service} at {routing.revision[:12]}",
            include=["bentos/**/*.py", "daemon/**/*.py", "flows/**/*.py", "routing.json"],
            envs=[BentoEnvSchema(name="SPECD_ROUTING_FILE", value=BENTO_ROUTING)],
            python={"packages": ["torch", "numpy", "pydantic", "pydantic-settings", "deltalake", "pyarrow", "PyYAML", "orjson"]},
            models=sorted({v.model_tag for v in routing.variants}),
            build_ctx=str(context),
        )
    return str(bento.tag)


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
