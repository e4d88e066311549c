"""Capture the Prefect UI of one reconcile with headless Chromium (Debian's `chromium`).

    .venv/bin/python tests/e2e/screenshots/capture_prefect_ui.py [OUT_DIR]

Builds a throw-away spec repository (two tables, one reading the other), starts a Prefect server on
127.0.0.1 under a temporary state home, runs `specd apply`, then screenshots the flow run page (task
graph with the plan's edges, the plan artifact's marker, logs, tags) into OUT_DIR (default: this folder),
as `prefect-reconcile-flow-run.png`.
The test that asserts the same things through Prefect's API is tests/e2e/test_prefect_observability.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from daemon.runtime.prefect_server import LocalPrefectServer, configure_client_env  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, env=env).stdout.strip()


def shoot(url: str, out: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1600,1000",
                    "--virtual-time-budget=20000", f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0]) if argv else Path(__file__).parent
    work = Path(tempfile.mkdtemp(prefix="specd-shot-"))
    repo, home = work / "repo", work / "home"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shutil.copytree(ROOT / "environments", repo / "environments")
    (repo / "data").mkdir()
    (repo / "data" / "x.csv").write_text("a,b\n1,2\n3,4\n")
    (repo / "specs" / "tables").mkdir(parents=True)
    (repo / "specs" / "tables" / "x.yaml").write_text("source: {type: file, path: data/x.csv, format: csv}\n")
    (repo / "specs" / "tables" / "child.yaml").write_text("source:\n  type: table\n  inputs: [x]\n  sql: select a from x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "two tables")
    sha = git(repo, "rev-parse", "HEAD")
    configure_client_env(home)
    server = LocalPrefectServer(home, "127.0.0.1", free_port())
    api = server.start(timeout_s=180)
    try:
        env = {**os.environ, "PREFECT_API_URL": api, "SPECD_HOME": str(home), "BENTOML_HOME": str(home / "bentoml")}
        subprocess.run([sys.executable, "-m", "daemon.cli", "apply", "--repo", str(repo), "--home", str(home)],
                       cwd=ROOT, env=env, check=True, timeout=600)
        body = json.dumps({"flow_runs": {"tags": {"all_": ["specd", f"revision:{sha[:12]}"]}}}).encode()
        run = None
        for _ in range(60):
            request = urllib.request.Request(f"{api}/flow_runs/filter", data=body, method="POST", headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                found = json.loads(response.read())
            if found:
                run = found[0]
                break
            time.sleep(1)
        if run is None:
            raise SystemExit("no flow run found")
        time.sleep(5)  # task runs and logs arrive asynchronously
        ui = api.removesuffix("/api")
        out_dir.mkdir(parents=True, exist_ok=True)
        shoot(f"{ui}/runs/flow-run/{run['id']}", out_dir / "prefect-reconcile-flow-run.png")
        print(f"wrote {out_dir / 'prefect-reconcile-flow-run.png'}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
