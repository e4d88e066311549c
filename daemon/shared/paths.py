"""Where specd keeps state on disk, in one place: the state home and what lives under it.

`$SPECD_HOME` (or `--home`) holds the lake (dev), the BentoML store, the Prefect database, the event
journal, the daemon lock, logs and generated dashboards. Everything here is git-ignored output.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = ".specd"


def specd_home(explicit: str | os.PathLike | None = None) -> Path:
    return Path(explicit or os.environ.get("SPECD_HOME") or DEFAULT_HOME).expanduser().absolute()


def bentoml_home(home: Path) -> Path:
    """The BentoML store: $BENTOML_HOME when set, else <home>/bentoml."""
    explicit = os.environ.get("BENTOML_HOME")
    return Path(explicit) if explicit else home / "bentoml"


def journal_path(home: Path) -> Path:
    return home / "events.jsonl"


def lock_path(home: Path) -> Path:
    return home / "daemon.lock"


def logs_dir(home: Path) -> Path:
    return home / "logs"


def prefect_home(home: Path) -> Path:
    return home / "prefect"


def dashboards_dir(home: Path) -> Path:
    return home / "grafana"


def runtime_dir(home: Path) -> Path:
    """PID files, routing files, sockets of processes the daemon supervises."""
    return home / "run"


def status_path(home: Path) -> Path:
    """The daemon's last published status (`specd status` reads it while the daemon runs)."""
    return home / "status.json"
