"""Operating between commits: suspensions and sync requests, kept as small files under the state home.

- `suspended.json` — `{"table/x": {"at": ..., "reason": ...}}`: `specd suspend` writes it, `plan` shows
  the resources as suspended and apply leaves them alone until `specd resume`.
- `requests/sync-*.json` — one file per `specd sync RESOURCE`: the running daemon picks them up between
  cycles (it polls the folder every tick, ~1 s) and runs a cycle that refreshes those resources even if
  they look in sync (an SQL or HTTP source cannot be observed without reading it). Without a daemon,
  `specd sync` runs that cycle itself under the daemon lock.
- `applied-env.json` — the `${oc.env:...}` values the daemon composed its last revision with: `plan` from
  another shell composes with the same values and warns when its own environment differs.

Every write is atomic (temp file + rename): a crash leaves the old file or the new one.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SUSPENDED = "suspended.json"
REQUESTS = "requests"
APPLIED_ENV = "applied-env.json"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def suspended(home: Path) -> dict[str, dict[str, Any]]:
    data = _read_json(home / SUSPENDED, {})
    return data if isinstance(data, dict) else {}


def suspend(home: Path, key: str, reason: str = "") -> bool:
    """Suspend `key`; False when it already was."""
    current = suspended(home)
    if key in current:
        return False
    current[key] = {"at": time.time(), "reason": reason}
    _write_json(home / SUSPENDED, current)
    return True


def resume(home: Path, key: str) -> bool:
    current = suspended(home)
    if current.pop(key, None) is None:
        return False
    _write_json(home / SUSPENDED, current)
    return True


def request_sync(home: Path, keys: Iterable[str]) -> Path:
    path = home / REQUESTS / f"sync-{time.time():.6f}-{uuid.uuid4().hex[:8]}.json"
    _write_json(path, {"type": "sync", "resources": sorted(keys), "at": time.time()})
    return path


def pending_syncs(home: Path) -> list[Path]:
    directory = home / REQUESTS
    try:
        return sorted(p for p in directory.iterdir() if p.name.startswith("sync-") and p.suffix == ".json")
    except OSError:
        return []


def take_syncs(home: Path) -> set[str]:
    """The resources of every pending sync request; the request files are removed (taken)."""
    keys: set[str] = set()
    for path in pending_syncs(home):
        data = _read_json(path, {})
        keys.update(str(k) for k in data.get("resources", ()) if isinstance(k, str))
        path.unlink(missing_ok=True)
    return keys


def record_applied_env(home: Path, values: Mapping[str, str | None], overrides: Iterable[str] = (), env: str = "") -> None:
    """What the daemon composed with: `${oc.env:...}` values and its `env.*` overrides (its --metrics-port)."""
    data = {"values": dict(values), "overrides": [o for o in overrides if o.lstrip("+~").startswith("env.")], "env": env}
    if _read_json(home / APPLIED_ENV, {}).get("values") != data["values"] or _read_json(home / APPLIED_ENV, {}).get("overrides") != data["overrides"]:
        _write_json(home / APPLIED_ENV, {**data, "at": time.time()})


def applied_env(home: Path) -> dict[str, Any] | None:
    data = _read_json(home / APPLIED_ENV, None)
    return data if isinstance(data, dict) and isinstance(data.get("values"), dict) else None


def pin_to_daemon(home: Path, env: str, overrides: list[str]) -> tuple[list[str], list[str]]:
    """Make this process compose like the daemon did: pin its `${oc.env}` values and add its `env.*`
    overrides (unless the caller overrides the same key). Returns (overrides to use, warnings)."""
    import os

    from daemon.shared.secrets import pin_env

    applied = applied_env(home)
    if not applied or (applied.get("env") and applied["env"] != env):
        return overrides, []
    pin_env(applied["values"])
    warnings = [f"${{oc.env:{name}}} is {os.environ.get(name)!r} in this shell but the daemon applied {value!r}; planning with the daemon's value"
                for name, value in sorted(applied["values"].items()) if name in os.environ and os.environ.get(name) != value]
    mine = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    extra = [o for o in applied.get("overrides", []) if o.split("=", 1)[0].lstrip("+~") not in mine]
    return list(overrides) + extra, warnings
