"""Shared building blocks of the spec models: strict base class, references, safe paths, secrets.

Every spec model forbids unknown fields (a typo is an error, not a silently ignored key) and is frozen,
so a validated spec is plain immutable data for graph, fingerprint and plan.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from daemon.shared.secrets import is_secret_ref

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


@dataclass(frozen=True)
class Ref:
    """A reference from one spec to another resource; `field` is the key path used for error lines."""

    kind: str
    name: str
    field: tuple


OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs", "az", "abfs", "abfss", "hdfs")  # read through pyarrow filesystems


def _relative_path(value: str) -> str:
    if not value:
        raise ValueError("path must not be empty")
    if any(ord(ch) < 32 for ch in value):
        raise ValueError("path contains control characters")
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme == "file":
            raise ValueError("file:// URIs are not allowed: give a path relative to the data root")
        if scheme not in OBJECT_STORE_SCHEMES:
            raise ValueError(f"URI scheme {scheme!r} is not supported (object stores: {', '.join(OBJECT_STORE_SCHEMES)})")
        return value  # object-store URI: the credentials of the environment's storage options decide
    if value.startswith("/") or value.startswith("~"):
        raise ValueError(f"{value!r} is absolute; paths in specs are relative to their root")
    normalised = posixpath.normpath(value)
    if normalised == ".." or normalised.startswith("../"):
        raise ValueError(f"{value!r} escapes its root")
    for part in normalised.split("/"):  # a glob component spelling '..' ([.][.], .?, ...)
        if part != ".." and re.fullmatch(r"[.?\[\]]*[.\[][.?\[\]]*", part) and fnmatch.fnmatchcase("..", part):
            raise ValueError(f"{value!r}: the glob component {part!r} could climb out of its root")
    return normalised


RelativePath = Annotated[str, AfterValidator(_relative_path)]


def _secret(value: str) -> str:
    if not is_secret_ref(value):
        raise ValueError("must be a secret reference: ${secret:NAME} (value from the environment or a secret file)")
    return value


SecretRef = Annotated[str, AfterValidator(_secret)]


def _name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a valid name (lowercase letters, digits, '_' or '-', max 63)")
    return value


ResourceName = Annotated[str, AfterValidator(_name)]
