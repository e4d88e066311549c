"""`tables.work_pool` for real: a table built by a `specd worker` (a real `prefect worker start --type process`)
on the session's Prefect server, into a lake on S3 (`moto_server` on 127.0.0.1, the only S3 endpoint
that installs here; production uses a real S3-compatible store). The worker checks out the applied sha
in its own directory, the build's result (version, rows) comes back over the Prefect API, the run's
parameters hold secret references only, and the Delta table on S3 is the one the daemon then observes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers.s3 import SECRET_KEY, s3_bucket, s3_server  # noqa: F401  (the session's moto_server)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def api(prefect_api: str):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        yield prefect_api


def test_a_table_builds_on_a_pool_worker_into_s3(spec_repo, tmp_path: Path, api: str, s3_server, s3_bucket, monkeypatch) -> None:  # noqa: F811
    from deltalake import DeltaTable

    from daemon.core.plan import Action, Op
    from daemon.runtime.reconcile import context_for, load_desired, make_adapters

    shutil.copytree(ROOT / "specs" / "presets", spec_repo.path / "specs" / "presets")
    spec_repo.write("specs/tables/bronze_penguins.yaml", (ROOT / "specs" / "tables" / "bronze_penguins.yaml").read_text())
    pool = f"tables-{uuid.uuid4().hex[:8]}"
    dev = spec_repo.path / "environments" / "dev.yaml"
    data = yaml.safe_load(dev.read_text())
    data["storage"] = {"root": f"s3://{s3_bucket}/lake", "storage_options": s3_server.spec_options()}
    data["prefect"] = {"api_url": api}
    data["tables"] = {"work_pool": pool, "build_timeout_s": 180}
    dev.write_text(yaml.safe_dump(data, sort_keys=False))
    spec_repo.commit("a table built on a work pool, lake on s3")
    sha = spec_repo.git("rev-parse", "HEAD")
    monkeypatch.setenv("SPECD_REPO_URL", str(spec_repo.path))

    workdir = tmp_path / "worker"
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("SPECD_HOME", None)
    log = (tmp_path / "worker.log").open("ab")
    worker = subprocess.Popen([sys.executable, "-m", "daemon.cli", "worker", "--pool", pool, "--limit", "1", "--workdir",
                               str(workdir), "--name", "w1"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        desired = load_desired(spec_repo.path, "dev", sha)
        notes: list[str] = []
        ctx = context_for(desired, tmp_path / "home", notes.append)
        adapter = make_adapters(ctx)["table"]
        [table] = [r for r in desired.graph.resources if r.kind == "table"]
        outcome = adapter.apply(Action("table", table.name, Op.CREATE, "new", table.fingerprint, None), table)
        assert "[built on w1]" in outcome.message, (outcome.message, (tmp_path / "worker.log").read_text()[-3000:])
        assert any(f"submitted build run {table.name}-" in n for n in notes), notes
        assert outcome.details["version"] == 0 and outcome.details["rows"]
        # on S3, whole: the daemon reads it back (observe) at the spec's fingerprint
        lake = DeltaTable(f"s3://{s3_bucket}/lake/tables/{table.name}", storage_options=s3_server.options())
        assert lake.version() == 0 and lake.to_pyarrow_table().num_rows == 344
        assert adapter.observe([table])[table.key].fingerprint == table.fingerprint
        assert (workdir / "checkouts" / sha / ".specd-checkout").is_file()  # exactly the applied tree
        assert not list((workdir / "runs").glob("*/job.json"))  # the resolved job (credentials) is removed
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

        with get_client(sync_client=True) as client:
            [run] = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"specd-table:{table.name}",
                                                                                                    f"git:{sha[:12]}"])))
        assert run.state_type.value == "COMPLETED"
        assert SECRET_KEY not in str(run.parameters) and "secret:" in str(run.parameters["job"]["storage_options"])
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGINT)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
        log.close()
