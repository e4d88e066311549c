"""The documents compose hands to everything after it: one validated spec per resource, and the set of them.

They live apart from `compose` so that generators (`dashboards.derive`) and adapters can take them without
importing the Hydra/OmegaConf machinery, and so that the import contracts can forbid engines from
importing `daemon.core.compose` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from daemon.core import deferred
from daemon.schema.environment import EnvironmentSpec


@dataclass(frozen=True)
class SpecDoc:
    kind: str
    name: str
    path: str  # repo-relative, for messages
    spec: BaseModel  # may be stored as a `deferred.Deferred` (from the compose cache file): loaded on first read
    data: dict[str, Any] = field(repr=False)  # normalised: validated, defaults filled, secrets as markers


deferred.install(SpecDoc)


@dataclass(frozen=True)
class Composed:
    env: EnvironmentSpec
    docs: tuple[SpecDoc, ...]

    def by_key(self) -> dict[str, SpecDoc]:
        return {f"{d.kind}/{d.name}": d for d in self.docs}
