"""Several GPU servers, for real: the daemon's Prefect server on PostgreSQL, two process workers, a kill -9.

Three working directories stand for three machines that share no disk: the daemon's state home, and the
work dirs of two `specd worker --pool gpus --limit 2` processes (each a real `prefect worker start --type
process`). The lake and the model store are on S3 (moto_server on 127.0.0.1, the test double for a real
S3-compatible store): `storage.root` and `storage.models_uri`. The daemon submits each candidate as a
deployment run; a worker checks out the applied sha, trains into its *own* BentoML store and exports the
model to the models URI; the daemon imports it into its store before promotion.

1. Four candidates, limit 2 per worker: at most 2 train at once per worker (start/end stamps from the
   runs themselves), both workers train, all 4 finish, each lands once in the shared store (one archive
   per candidate on S3, each in exactly one worker's own store) and in the daemon's store.
2. A fifth candidate: the worker that takes it is killed (SIGKILL to its whole process tree, like a
   server that dies); its heartbeat stops, the daemon declares the run lost and submits it again, the
   other worker trains it, and the status message says so. Nothing trains twice to completion.
3. `git revert` of that commit restores the previous champion with no training (no new run).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import free_port
from tests.e2e.conftest import DaemonProcess
from tests.helpers.journeys import MODEL, PENGUIN_ONLY, dump_yaml, make_stack_repo, read_yaml, release, stored_models
from tests.helpers.s3 import s3_bucket, s3_server  # noqa: F401  (the session's moto_server, a fresh bucket)
from tests.helpers.tables_transforms import postgres  # noqa: F401  (the session's private PostgreSQL)

pytestmark = pytest.mark.timeout(400)
CANDIDATES = {"a": [], "b": ["optim.lr=0.02"], "c": ["optim.lr=0.005"], "d": ["model.hidden=[16]"]}


class Worker:
    """`specd worker` in its own directory (a GPU server), stopped by PID."""

    def __init__(self, name: str, root: Path, api_url: str):
        self.name, self.dir = name, root / name
        self.dir.mkdir(parents=True)
        env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(self.dir / "prefect"),
               "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
               "PREFECT_LOGGING_LEVEL": "WARNING", "SPECD_HEARTBEAT_S": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("SPECD_HOME", None)
        self.log = (root / f"{name}.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "worker", "--pool", "gpus", "--limit", "2",
                                      "--workdir", str(self.dir), "--name", name],
                                     cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def runs(self) -> list[dict]:
        """The jobs this worker started: candidate and run dir, from its own work dir."""
        out = []
        for job in sorted((self.dir / "runs").glob("*/job.json")):
            candidate = json.loads(job.read_text()).get("candidate")
            if candidate is not None:  # a training run (not a table build)
                out.append({"candidate": candidate, "dir": job.parent})
        return out

    def own_models(self) -> set[str]:
        """The model versions in this worker's own BentoML store (not shared with anyone)."""
        directory = self.dir / "bentoml" / "models" / MODEL
        return {p.name for p in directory.iterdir() if p.is_dir()} if directory.is_dir() else set()

    def kill9_tree(self) -> None:
        """A server that dies: every process of this worker, flow runs and training included, SIGKILLed."""
        try:
            parent = psutil.Process(self.proc.pid)
            family = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        for process in family:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # a process worker ignores the first SIGTERM for a while
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9_tree()
        try:
            for process in psutil.Process(self.proc.pid).children(recursive=True):
                process.kill()
        except psutil.NoSuchProcess:
            pass
        self.log.close()


def _model_spec(repo: Path, candidates: dict[str, list[str]]) -> None:
    spec = read_yaml(repo / "specs/models/penguin_sex.yaml")
    spec["trainer"]["epochs"] = 2
    spec["candidates"] = candidates
    spec["promotion"]["guardrails"] = []
    (repo / "specs/models/penguin_sex.yaml").write_text(dump_yaml(spec, "four small candidates"))


def _overlaps(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def _pool_details(home: Path) -> dict:
    """Where each candidate of the current release ran (release.data["pool"], written by the daemon)."""
    return release(home).data["pool"]["candidates"]


def _shared_archives(s3: object, bucket: str) -> list[str]:
    """The model archives in the shared store on S3 (`<models_uri>/<model>/models/<version>.bentomodel`)."""
    import pyarrow.fs as pafs

    from daemon.shared.storage_uri import arrow_s3_kwargs

    fs = pafs.S3FileSystem(**arrow_s3_kwargs(s3.options()))
    found = fs.get_file_info(pafs.FileSelector(f"{bucket}/models/{MODEL}/models", allow_not_found=True))
    return sorted(f.base_name for f in found if f.base_name.endswith(".bentomodel"))


def test_candidates_train_on_two_workers_with_a_worker_killed(tmp_path, home, postgres, s3_server, s3_bucket):  # noqa: F811
    with postgres.connect() as connection:
        connection.execute("CREATE DATABASE prefect_pools")
    repo = make_stack_repo(tmp_path / "repo", tables=PENGUIN_ONLY, dashboards=False)
    for spec in (repo.path / "specs" / "services").glob("*.yaml"):
        spec.unlink()
    port = free_port()
    dev = read_yaml(repo.path / "environments" / "dev.yaml")
    dev["prefect"] = {"port": port, "database_url": "${secret:PREFECT_DB_URL}"}
    dev["training"] = {"work_pool": "gpus", "heartbeat_timeout_s": 10, "run_attempts": 3, "pool_limit": 4}
    dev["storage"] = {"root": f"s3://{s3_bucket}/lake", "models_uri": f"s3://{s3_bucket}/models",
                      "storage_options": s3_server.spec_options()}  # no shared disk between the three machines
    (repo.path / "environments" / "dev.yaml").write_text(yaml.safe_dump(dev, sort_keys=False))
    _model_spec(repo.path, CANDIDATES)
    first = repo.commit("four candidates on the work pool")

    api = f"http://127.0.0.1:{port}/api"
    daemon = DaemonProcess(repo.path, home, DaemonProcess.EMBEDDED,
                           {"PREFECT_DB_URL": postgres.url("prefect_pools").replace("+psycopg", "")}).start()
    workers: list[Worker] = []
    try:
        deadline = time.monotonic() + 180
        while "Prefect UI on" not in daemon.log_text():
            assert time.monotonic() < deadline and daemon.proc.poll() is None, daemon.log_text()[-3000:]
            time.sleep(0.5)
        assert "database: PostgreSQL" in daemon.log_text()
        workers = [Worker("w1", tmp_path, api), Worker("w2", tmp_path, api)]
        status = daemon.wait_converged(first, timeout=300)

        # 1. four candidates, two per worker at most, both workers, each once in the store
        rel = release(home)
        assert rel is not None and set(rel.candidates) == set(CANDIDATES)
        pool = _pool_details(home)
        assert set(pool) == set(CANDIDATES)
        # on a loaded box a slow run can be declared lost and submitted again; the second submission then
        # finds the first one's model complete ("reused") instead of training it again
        resubmitted = sum(len(info["attempts"]) - 1 for info in pool.values())
        assert all(c["status"] == "trained" or (c["status"] == "reused" and len(pool[name]["attempts"]) > 1)
                   for name, c in rel.candidates.items()), (rel.candidates, pool)
        by_worker: dict[str, list[tuple[float, float]]] = {}
        for info in pool.values():
            by_worker.setdefault(info["worker"], []).append((info["started_at"], info["ended_at"]))
        assert set(by_worker) == {"w1", "w2"}, by_worker
        assert all(_overlaps(spans) <= 2 for spans in by_worker.values()), by_worker
        assert sum(len(w.runs()) for w in workers) == 4  # no candidate ran twice
        assert len(stored_models(home)) == 4  # imported into the daemon's own store
        assert len(_shared_archives(s3_server, s3_bucket)) == 4
        owned = [w.own_models() for w in workers]
        assert all(owned) and not (owned[0] & owned[1]) and owned[0] | owned[1] == stored_models(home), owned
        first_champion = rel.champion

        # 2. a fifth candidate; kill -9 the worker that takes it
        _model_spec(repo.path, {**CANDIDATES, "e": ["optim.lr=0.03"]})
        second = repo.commit("candidate e")
        deadline = time.monotonic() + 120
        taken = None
        while taken is None:
            assert time.monotonic() < deadline, "no worker started candidate e"
            taken = next((w for w in workers if any(r["candidate"] == "e" for r in w.runs())), None)
            time.sleep(0.2)
        time.sleep(1.0)
        taken.kill9_tree()
        other = next(w for w in workers if w is not taken)
        status = daemon.wait_converged(second, timeout=240)
        message = next(r for r in status["resources"] if f"{r['kind']}/{r['name']}" == f"model/{MODEL}")["message"]
        assert f"candidate e retried on {other.name}" in message and "lost: no heartbeat" in message, message
        assert [r["candidate"] for r in other.runs()].count("e") == 1
        assert len(stored_models(home)) == 5
        assert len(_shared_archives(s3_server, s3_bucket)) == 5
        assert release(home).candidates["e"]["status"] == "trained"

        # 3. git revert: the previous champion again, no training (no new run on any worker)
        runs_before = len(other.runs())
        repo.git("revert", "--no-edit", "HEAD")
        third = repo.head()
        daemon.wait_converged(third, timeout=120)
        rel = release(home)
        assert rel.champion == first_champion and set(rel.candidates) == set(CANDIDATES)
        assert len(other.runs()) == runs_before
    finally:
        for worker in workers:
            worker.stop()
        daemon.stop()
    # the workers ran the checkout of the applied sha, not this tree; Prefect kept its runs in PostgreSQL
    assert all((w.dir / "checkouts" / first / ".specd-checkout").is_file() for w in workers)
    import psycopg

    with psycopg.connect(host=postgres.host, port=postgres.port, user=postgres.user, password=postgres.password,
                         dbname="prefect_pools", autocommit=True) as connection:
        names = [row[0] for row in connection.execute("SELECT name FROM flow_run").fetchall()]
    assert sum(n.startswith("penguin_sex-e-") for n in names) == 2
    assert sum(n.startswith("penguin_sex-") for n in names) == 6 + resubmitted
