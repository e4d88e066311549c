"""Model releases: which trained candidates serve a model at one model fingerprint (the registry's "aliases").

A release is a small JSON file per (model, model fingerprint) next to the BentoML store:
`$BENTOML_HOME/specd-releases/<model>/<fingerprint>.json`, plus `current.json` pointing at the release
that is live. Both are written atomically (temp file + fsync + rename), release before pointer, so a
kill -9 at any point leaves either the old or the new state, never a torn file. A file torn anyway (a
disk fault, a hand edit) raises `daemon.shared.corrupt.CorruptState` naming it, never a silent "absent".

Why files and not BentoML labels alone: the same trained model (tag) can be champion in one release and
challenger in another; a release is the *decision*, the model store holds the *artifacts*. Observing a
model (`specd plan`) only reads these JSON files, so this module is import-light: no torch, no bentoml.

Contract (daemon/CONTRACTS.md, "Model store"): `release_for(model, fingerprint)`,
`current_release(model)` → `Release(model, fingerprint, champion, challengers, decision, git_sha)`;
`champion` and `challengers` are BentoML model tags (`<model>:<candidate>-<candidate_fp[:16]>`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from daemon.shared import fsio

RELEASES_DIR = "specd-releases"
CURRENT = "current.json"


def store_root(explicit: str | os.PathLike | None = None) -> Path:
    """The BentoML home: explicit, else $BENTOML_HOME, else <$SPECD_HOME or ./.specd>/bentoml."""
    if explicit:
        return Path(explicit)
    from daemon.shared.paths import bentoml_home, specd_home

    return bentoml_home(specd_home())


@dataclass(frozen=True)
class Release:
    model: str
    fingerprint: str  # the model resource's fingerprint (spec + upstream + code version)
    champion: str | None  # BentoML tag serving the bulk of traffic; None when nothing ever passed the gates
    challengers: tuple[str, ...]  # BentoML tags of trained candidates that passed guardrails but did not win
    decision: str  # why: "promoted b: f1 0.912 > champion 0.880 + 0.01", "kept champion: ..."
    git_sha: str
    created_at: float = 0.0
    # candidate name -> {"tag", "status" (trained|reused|diverged|failed|guardrail), "metrics", "message"}
    candidates: dict[str, Any] = field(default_factory=dict)
    champion_metrics: dict[str, Any] = field(default_factory=dict)  # the champion re-scored on this holdout
    data: dict[str, Any] = field(default_factory=dict)  # {"table", "uri", "delta_version"}

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["challengers"] = list(self.challengers)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Release:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["challengers"] = tuple(known.get("challengers") or ())
        return cls(**known)


def _model_dir(model: str, root: str | os.PathLike | None) -> Path:
    if not model or "/" in model or model.startswith("."):
        raise ValueError(f"invalid model name {model!r}")
    return store_root(root) / RELEASES_DIR / model


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never a partial one (durable, 0600 in a 0700 directory)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fsio.atomic_write_json(path, data, indent=2)


def _read(path: Path) -> dict[str, Any] | None:
    """A release or pointer file; None when absent; CorruptState (naming the file) when unreadable."""
    from daemon.shared.corrupt import CorruptState, read_json

    data = read_json(path)
    if data is not None and not isinstance(data, dict):
        raise CorruptState(path, "not a JSON object")
    return data


def release_for(model: str, fingerprint: str, root: str | os.PathLike | None = None) -> Release | None:
    """The release recorded for this model fingerprint, or None (never trained at that fingerprint)."""
    data = _read(_model_dir(model, root) / f"{fingerprint}.json")
    return Release.from_json(data) if data else None


def current_release(model: str, root: str | os.PathLike | None = None) -> Release | None:
    """The live release of a model (what services route to), or None."""
    path = _model_dir(model, root) / CURRENT
    pointer = _read(path)
    if not pointer:
        return None
    if not isinstance(pointer.get("fingerprint"), str):
        from daemon.shared.corrupt import CorruptState

        raise CorruptState(path, "no fingerprint in the release pointer")
    return release_for(model, pointer["fingerprint"], root)


def list_releases(model: str, root: str | os.PathLike | None = None) -> list[Release]:
    """Every release of a model, oldest first."""
    directory = _model_dir(model, root)
    if not directory.is_dir():
        return []
    releases = []
    for path in directory.glob("*.json"):
        if path.name == CURRENT or path.name.startswith("."):
            continue
        try:
            data = _read(path)
        except ValueError:  # a corrupt earlier release is just not restorable; the current one is checked
            continue
        if data:
            releases.append(Release.from_json(data))
    return sorted(releases, key=lambda r: (r.created_at, r.fingerprint))


def list_models(root: str | os.PathLike | None = None) -> list[str]:
    """Names of every model that has at least one release."""
    directory = store_root(root) / RELEASES_DIR
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def write_release(release: Release, root: str | os.PathLike | None = None, *, make_current: bool = True) -> Release:
    """Record a release (idempotent for the same content) and, by default, make it the current one."""
    if not release.created_at:
        release = Release.from_json({**release.to_json(), "created_at": time.time()})
    directory = _model_dir(release.model, root)
    atomic_write_json(directory / f"{release.fingerprint}.json", release.to_json())
    if make_current:
        set_current(release.model, release.fingerprint, root)
    return release


def set_current(model: str, fingerprint: str, root: str | os.PathLike | None = None) -> Release:
    """Make an existing release current again (rollback). Raises KeyError when it does not exist."""
    release = release_for(model, fingerprint, root)
    if release is None:
        raise KeyError(f"model {model!r} has no release for fingerprint {fingerprint[:12]}")
    atomic_write_json(_model_dir(model, root) / CURRENT, {"fingerprint": fingerprint, "at": time.time()})
    return release


def delete_model(model: str, root: str | os.PathLike | None = None) -> None:
    """Forget every release of a model (the pointer first, so a crash never leaves a dangling current)."""
    directory = _model_dir(model, root)
    (directory / CURRENT).unlink(missing_ok=True)
    for path in directory.glob("*.json"):
        path.unlink(missing_ok=True)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
