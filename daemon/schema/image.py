"""Container images of services: `artifact: {build: true, image: {...}}` and the environment's `images:`.

Why a schema of its own: the bento specd builds per service version is only useful to a cluster as an
image. `bentoml containerize` makes one with the `buildah` or `podman` backend (both in Debian, neither
needs a daemon), but the Dockerfile BentoML generates starts from a base image pulled from a registry —
which production names (its own hardened base) and an air-gapped host must build locally. So the base,
the registry prefix and the backend are environment settings a service may override; everything else
(the tag: the model release plus the service fingerprint) is decided by specd and recorded.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_serializer

from daemon.schema.base import SpecModel

# An image reference as a registry accepts it: [host[:port]/]path[:tag][@sha256:digest]. Base images
# may name a tag or digest; an image *name* (the repository specd tags) may not.
IMAGE_REF = r"^[a-z0-9]+([._/:-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
IMAGE_NAME = r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
OPTION_KEY = r"^[a-z][a-z0-9-]*$"  # a `bentoml containerize --opt KEY=VALUE` key: a backend flag without `--`

Backend = Literal["buildah", "podman"]
OptionKey = Annotated[str, StringConstraints(pattern=OPTION_KEY, max_length=64)]
OptionValue = Annotated[str, StringConstraints(pattern=r"^[^,\n\r]*$", max_length=1024)]  # BentoML splits --opt values on commas


class ImageBuildSpec(SpecModel):
    """A service's `artifact.image`. Unset fields take the environment's `images:` section."""

    name: str | None = Field(default=None, pattern=IMAGE_NAME, max_length=255)  # None: <images.registry>/<service>
    base: str | None = Field(default=None, pattern=IMAGE_REF, max_length=512)  # None: images.base
    backend: Backend | None = None  # None: images.backend
    options: dict[OptionKey, OptionValue] = Field(default_factory=dict)  # extra backend flags: --opt KEY=VALUE (merged over images.options)
    preinstalled: bool | None = None  # None: images.preinstalled

    @model_serializer(mode="wrap")
    def _compact(self, handler):  # type: ignore[no-untyped-def]
        return {k: v for k, v in handler(self).items() if v not in (None, {})}


class ImagesSection(SpecModel):
    """The environment's `images:` section: how every service image is built here."""

    base: str | None = Field(default=None, pattern=IMAGE_REF, max_length=512)  # None: deploy.base_image, else BentoML's default
    registry: str | None = Field(default=None, pattern=IMAGE_NAME, max_length=255)  # None: deploy.registry
    backend: Backend = "buildah"
    options: dict[OptionKey, OptionValue] = Field(default_factory=dict)  # e.g. {isolation: chroot} where user namespaces are unavailable
    # The base image already holds the bento's Python environment at /app/.venv: nothing is installed
    # while building (an air-gapped host, a hardened base). False: BentoML installs the locked packages.
    preinstalled: bool = False
    timeout_s: float = Field(default=3600.0, gt=0, le=86400)  # one `bentoml containerize` run
