"""Service images: the tag specd gives one, the command that builds it, and the record of what was built.

Why here (shared): the services adapter builds the image and the manifests adapter names it in every
Deployment, and kind adapters may not import each other — so both read one record file,
`<home>/images/<service>.json`, through this module.

The tag is the model release plus the service fingerprint (`<champion version>-<fingerprint[:12]>`):
a retrain (new release, same spec) and a spec change (same release) each give a new tag, and the same
release of the same spec always the same one. The record maps the *default* image reference of a
service version (what `daemon.core.manifests` renders from the tree alone: `<repo>:v<spec digest>`)
to the image built for it, and keeps the last HISTORY of them: the manifests of a service version use
its built image when one was recorded, and a `git revert` brings back the earlier version's image.
A record is written whole (atomic rename) after the image exists, so a kill -9 mid-build leaves the
previous record and the next apply builds again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.shared.fsio import atomic_write_json, read_json

HISTORY = 20  # service versions whose images a record remembers
_TAG_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def image_tag(release_tag: str | None, fingerprint: str) -> str:
    """`<model release version>-<fingerprint[:12]>` as a valid image tag (at most 128 characters)."""
    version = (release_tag or "").split(":", 1)[-1] or "norelease"
    version = _TAG_BAD.sub("_", version).lstrip(".-") or "norelease"
    return f"{version[:115]}-{fingerprint[:12]}"


def image_repository(service: str, settings: Mapping[str, Any], env: Any) -> str:
    """The repository a service's image is tagged in: `artifact.image.name`, else `<registry>/<service>`
    with the environment's `images.registry` (or `deploy.registry`)."""
    if settings.get("name"):
        return str(settings["name"])
    registry = env.images.registry or env.deploy.registry
    return f"{registry}/{service.replace('_', '-').strip('-')}"


def build_settings(settings: Mapping[str, Any], env: Any) -> dict[str, Any]:
    """The effective base, backend, backend options and `preinstalled` of one service's image (service over env)."""
    images = env.images
    return {"base": settings.get("base") or images.base or env.deploy.base_image,
            "backend": settings.get("backend") or images.backend,
            "options": {**images.options, **(settings.get("options") or {})},
            "preinstalled": images.preinstalled if settings.get("preinstalled") is None else bool(settings["preinstalled"])}


def containerize_argv(bentoml: str, bento_tag: str, image: str, backend: str, options: Mapping[str, str],
                      labels: Mapping[str, str] | None = None) -> list[str]:
    """The `bentoml containerize` command line (argv, no shell): one image tag, the backend, each
    backend option as `--opt KEY=VALUE` (BentoML passes it on as `--KEY VALUE`) and each image label
    as `--opt label=KEY=VALUE` (the image carries its lineage: service, fingerprint, git sha, release)."""
    argv = [bentoml, "containerize", bento_tag, "--backend", backend, "--image-tag", image]
    for key, value in sorted(options.items()):
        argv += ["--opt", f"{key}={value}" if value != "" else key]
    for key, value in sorted((labels or {}).items()):
        argv += ["--opt", f"label={key}={value.replace(',', '_')}"]
    return argv


def record_path(home: Path, service: str) -> Path:
    return Path(home) / "images" / f"{service}.json"


def read_record(home: Path, service: str) -> dict[str, Any]:
    """{default image: build entry} of a service; empty when none was built (or the file is torn)."""
    data = read_json(record_path(home, service))
    builds = (data or {}).get("builds")
    return {k: v for k, v in builds.items() if isinstance(v, dict) and isinstance(v.get("image"), str)} if isinstance(builds, dict) else {}


def record_build(home: Path, service: str, default_image: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Record the image built for the service version whose default reference is `default_image`."""
    builds = read_record(home, service)
    builds.pop(default_image, None)
    builds[default_image] = {**entry, "built_at": time.time()}
    kept = dict(sorted(builds.items(), key=lambda kv: float(kv[1].get("built_at", 0)))[-HISTORY:])
    atomic_write_json(record_path(home, service), {"service": service, "builds": kept}, mode=0o644)
    return kept[default_image]


def built_image(home: Path | None, service: str, default_image: str) -> str | None:
    """The image recorded for this service version, or None (the manifests keep the default reference)."""
    if home is None:
        return None
    entry = read_record(home, service).get(default_image)
    return entry["image"] if entry else None


def with_built_image(data: Mapping[str, Any], home: Path | None) -> Mapping[str, Any]:
    """A `manifests/<service>` resource's data with its built image, when one is recorded."""
    image = built_image(home, str(data["service"]), str(data["image"]))
    return data if image is None or image == data["image"] else {**data, "image": image}
