"""What every work-pool flow does first on a worker: check out exactly the applied git sha.

Why shared: training candidates (`flows.training.pool`) and table builds (`flows.tables.pool`) both run
on other machines, and both must run the code the plan showed, not whatever the worker has installed.
Each worker keeps `$SPECD_WORKER_DIR/checkouts/<sha>`, made atomically (clone into a temporary
directory, then rename) and reused by later runs of that sha. Light: no prefect import.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def worker_name() -> str:
    return os.environ.get("SPECD_WORKER_NAME") or socket.gethostname()


def worker_dir() -> Path:
    return Path(os.environ.get("SPECD_WORKER_DIR") or Path.home() / ".specd-worker")


def _git(args: list[str], cwd: Path | None = None) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:2])}: {result.stderr.strip()}")


def ensure_checkout(repo_url: str, sha: str, root: Path) -> Path:
    """`root/checkouts/<sha>`: exactly that commit's tree, made once (clone into a temp dir, rename)."""
    target = root / "checkouts" / sha
    if (target / ".specd-checkout").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=target.parent))
    try:
        _git(["clone", "--quiet", "--no-checkout", repo_url, str(tmp)])
        _git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", sha], cwd=tmp)
        (tmp / ".specd-checkout").write_text(sha + "\n", encoding="utf-8")
        try:
            tmp.rename(target)
        except OSError:  # another run of this worker made it first
            if not (target / ".specd-checkout").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
