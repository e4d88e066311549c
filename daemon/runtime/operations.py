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


def record_applied_env(home: Path, values: Mapping[str, str | None]) -> None:
    _write_json(home / APPLIED_ENV, {"values": dict(values), "at": time.time()})


def applied_env(home: Path) -> dict[str, str | None] | None:
    data = _read_json(home / APPLIED_ENV, None)
    return dict(data["values"]) if isinstance(data, dict) and isinstance(data.get("values"), dict) else None
