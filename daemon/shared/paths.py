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
# -- permissions ---------------------------------------------------------------------------------------
# The state home holds routing files with key digests, the journal and model artifacts; the secrets
# directory holds credentials in clear. Both are the operator's alone: 0700 directories, 0600 files.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class InsecureSecrets(RuntimeError):
    """The secrets directory (or a file in it) is readable or writable by group or others."""


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) 0700; an existing directory specd created keeps its mode
    unless group/others can read it, which is tightened."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, PRIVATE_DIR)
    return path


def prepare_home(home: Path) -> Path:
    """The state home and its runtime directory (routing files, PIDs), 0700."""
    private_dir(home)
    private_dir(runtime_dir(home))
    return home


def check_secrets_dir(environ: os._Environ | dict | None = None) -> Path | None:
    """Raise InsecureSecrets naming the path and the chmod to run when `$SPECD_SECRETS_DIR` or a file
    in it is accessible to group or others. None when no secrets directory is configured."""
    env = os.environ if environ is None else environ
    configured = env.get("SPECD_SECRETS_DIR")
    if not configured:
        return None
    directory = Path(configured).expanduser()
    if not directory.is_dir():
        return None
    entries = [directory, *sorted(p for p in directory.iterdir() if p.is_file())]
    loose = [p for p in entries if p.stat().st_mode & 0o077]
    if loose:
        shown = ", ".join(f"{p} ({oct(p.stat().st_mode & 0o777)})" for p in loose[:5])
        raise InsecureSecrets(
            f"the secrets directory is accessible to group or others: {shown}; "
            f"run `chmod 700 {directory} && chmod 600 {directory}/*` and start again"
        )
    return directory
