"""Work pools and a Prefect server fit for several workers: the overlay fields, their validation, the plan
line that says where candidates train, the PostgreSQL URL handed to Prefect, the `specd worker` command
and the status note of a retried run. The real pool, workers and PostgreSQL: tests/e2e/test_work_pools.py."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from daemon.adapters.models.pool import PoolRun, attempts_note
from daemon.core.compose import load_environment
from daemon.core.plan import Action, Op
from daemon.core.state import Observed
from daemon.runtime.prefect_server import LocalPrefectServer, async_database_url
from daemon.runtime.reconcile import context_for, load_desired, make_adapters
from daemon.shared.errors import SpecErrors
from tests.conftest import ROOT


def _env(tmp_path: Path, text: str):
    (tmp_path / "environments").mkdir(exist_ok=True)
    (tmp_path / "environments" / "x.yaml").write_text(text)
    return load_environment(tmp_path, "x")


def test_a_work_pool_on_the_embedded_sqlite_server_is_an_error_naming_file_line_and_field(tmp_path: Path) -> None:
    with pytest.raises(SpecErrors) as caught:
        _env(tmp_path, "name: x\ntraining:\n  devices: 1\n  work_pool: gpus\n")
    text = str(caught.value)
    assert text.startswith("environments/x.yaml:4: training.work_pool: work pool 'gpus' has remote workers")
    assert "prefect.database_url" in text and "prefect.api_url" in text


def test_postgres_or_an_existing_server_makes_a_work_pool_valid(tmp_path: Path) -> None:
    env = _env(tmp_path, "name: x\nprefect:\n  database_url: ${secret:PREFECT_DB}\ntraining:\n  work_pool: gpus\n"
                         "  work_queue: a100\n  queue_limits: {a100: 8, t4: 4}\n  pool_limit: 12\n")
    assert env.training.work_pool == "gpus" and env.training.queue_limits == {"a100": 8, "t4": 4}
    env = _env(tmp_path, "name: x\nprefect:\n  api_url: http://127.0.0.1:4200/api\n  api_key: ${secret:PREFECT_KEY}\n"
                         "training:\n  work_pool: gpus\n")
    assert env.prefect.api_key == "secret:PREFECT_KEY"  # a reference, resolved only at start
    assert _env(tmp_path, "name: x\n").training.work_pool is None  # unset: today's local training


@pytest.mark.parametrize("text, field", [
    ("prefect:\n  database_url: postgresql://u:p@127.0.0.1/db\n", "prefect.database_url"),  # never a literal
    ("prefect:\n  api_key: pnu_abc\n", "prefect.api_key"),
    ("training:\n  queue_limits: {a100: 2}\n", "training.queue_limits"),
    ("training:\n  queue_limits: {a100: 0}\n", "training.queue_limits"),
    ("prefect:\n  api_url: http://127.0.0.1:1/api\ntraining:\n  work_pool: 'gpus; rm'\n", "training.work_pool"),
])
def test_bad_pool_and_database_fields_are_rejected(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(SpecErrors) as caught:
        _env(tmp_path, "name: x\n" + text)
    assert f": {field}" in str(caught.value)


def test_the_plan_says_where_candidates_train(tmp_path: Path) -> None:
    overrides = ("env.prefect.api_url=http://127.0.0.1:9/api", "env.training.work_pool=gpus", "env.training.work_queue=a100")
    desired = load_desired(ROOT, "dev", "rev1", overrides)
    adapters = make_adapters(context_for(desired, tmp_path, prefect=False))
    model = next(r for r in desired.graph.resources if r.kind == "model")
    live = Observed(True, "old", details={"preview": {"to_train": ["c"], "reused": ["a", "b"], "minutes": 0.5}})
    text = adapters["model"].describe(Action("model", model.name, Op.UPDATE, "why", model.fingerprint, "old"), model, live)
    assert text.startswith("train candidate c on CPU on work pool gpus queue a100 (~0.5 CPU-min), reuse a, b")
    local = load_desired(ROOT, "dev", "rev1")
    text = make_adapters(context_for(local, tmp_path, prefect=False))["model"].describe(
        Action("model", model.name, Op.UPDATE, "why", model.fingerprint, "old"), model, live)
    assert text.startswith("train candidate c on CPU (~0.5 CPU-min)")  # unset: unchanged


def test_postgres_urls_are_given_to_prefect_with_asyncpg(tmp_path: Path) -> None:
    assert async_database_url("postgresql://u:p@h:5432/d") == "postgresql+asyncpg://u:p@h:5432/d"
    assert async_database_url("postgresql+psycopg://u:p@h/d") == "postgresql+asyncpg://u:p@h/d"
    assert async_database_url("postgres://h/d") == "postgresql+asyncpg://h/d"
    assert async_database_url("postgresql+asyncpg://h/d") == "postgresql+asyncpg://h/d"
    pg = LocalPrefectServer(tmp_path, port=4999, database_url="postgresql://u:secret@h/d")
    sqlite = LocalPrefectServer(tmp_path, port=4999)
    assert pg.database_url == "postgresql+asyncpg://u:secret@h/d" and sqlite.database_url is None
    assert pg.database_digest != sqlite.database_digest and "secret" not in pg.database_digest


def test_specd_worker_wraps_a_process_worker_with_its_own_dir_and_a_gpu_limit(tmp_path: Path, monkeypatch) -> None:
    from daemon.cli.worker import command, default_limit

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert default_limit() == 3
    args = argparse.Namespace(pool="gpus", limit=None, workdir=str(tmp_path / "w"), queue=["a100"], name="gpu-1")
    argv, env = command(args)
    assert argv[1:] == ["-m", "prefect", "worker", "start", "--pool", "gpus", "--type", "process", "--limit", "3",
                        "--name", "gpu-1", "--install-policy", "never", "--work-queue", "a100"]
    assert env["SPECD_WORKER_DIR"] == str(tmp_path / "w") and env["SPECD_WORKER_NAME"] == "gpu-1"
    assert str(ROOT) in env["PYTHONPATH"].split(":")  # the deployment's entrypoint is importable


def test_status_note_names_the_lost_worker_and_where_the_run_finished() -> None:
    lost = {"name": "m-e-1", "worker": "w2", "state": "CRASHED", "message": "worker w2 lost: no heartbeat for 6 s"}
    done = {"name": "m-e-2", "worker": "w1", "state": "COMPLETED", "message": ""}
    runs = [PoolRun({"candidate": "e"}, attempts=[lost, done], worker="w1"), PoolRun({"candidate": "a"}, attempts=[done], worker="w1")]
    assert attempts_note(runs) == "candidate e retried on w1 after m-e-1: crashed (worker w2 lost: no heartbeat for 6 s)"
    assert attempts_note(runs[1:]) == ""


def test_runs_on_one_worker_lease_disjoint_gpu_sets(tmp_path: Path) -> None:
    from contextlib import ExitStack

    from flows.training.gpu_lease import gpu_lease

    gpus = {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    with ExitStack() as stack:
        first = stack.enter_context(gpu_lease({"accelerator": "gpu", "devices": 2}, tmp_path, gpus))
        second = stack.enter_context(gpu_lease({"accelerator": "gpu", "devices": 2}, tmp_path, gpus))
        assert first == ["0", "1"] and second == ["2", "3"]
    with gpu_lease({"accelerator": "gpu", "devices": 2}, tmp_path, gpus) as again:
        assert again == ["0", "1"]  # released when the runs ended
    with gpu_lease({"accelerator": "cpu"}, tmp_path, gpus) as none:
        assert none is None


def test_the_prod_example_with_a_work_pool_validates(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    prod = tmp_path / "environments" / "prod.yaml"
    prod.write_text(prod.read_text().replace("  # work_pool: gpus", "  work_pool: gpus"))
    env = load_environment(tmp_path, "prod")
    assert env.training.work_pool == "gpus" and env.prefect.api_url


def test_the_embedded_server_keeps_the_foreman_on_only_with_a_work_pool(tmp_path: Path, monkeypatch) -> None:
    """Lean by default; with training.work_pool the foreman (workers' ONLINE/OFFLINE, the pool's READY) runs."""
    from daemon.runtime import prefect_server

    seen: list[dict] = []

    class Proc:
        pid = 1

    monkeypatch.setattr(prefect_server.procs, "spawn", lambda argv, log_path, env: seen.append(env) or Proc())
    monkeypatch.setattr(prefect_server.procs, "record_for", lambda proc, meta: prefect_server.procs.PidRecord(1, 0, meta))
    monkeypatch.delenv("PREFECT_SERVER_SERVICES_FOREMAN_ENABLED", raising=False)
    for pools in (False, True):
        LocalPrefectServer(tmp_path, port=4999, work_pools=pools)._spawn(tmp_path / "log")
    lean, pooled = seen
    assert lean["PREFECT_SERVER_SERVICES_FOREMAN_ENABLED"] == "false"
    assert "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED" not in pooled  # Prefect's default: on
    assert pooled["PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED"] == "false"  # the rest stays lean


def test_a_work_pool_without_a_models_uri_warns_that_a_shared_filesystem_is_assumed(tmp_path: Path) -> None:
    from daemon.adapters.models.pool_checks import shared_disk_warning

    repo = tmp_path / "repo"
    (repo / "environments").mkdir(parents=True)
    text = "name: x\nprefect:\n  api_url: http://127.0.0.1:9/api\ntraining:\n  devices: 1\n  work_pool: gpus\n"
    (repo / "environments" / "x.yaml").write_text(text)
    env = load_environment(repo, "x")
    ctx = context_for(load_desired(ROOT, "dev", "rev1"), tmp_path / "home", prefect=False)
    issue = shared_disk_warning(type(ctx)(env=env, home=ctx.home, repo_dir=repo, revision="rev1"))
    assert issue is not None and str(issue).startswith("environments/x.yaml:6: training.work_pool: work pool 'gpus' without "
                                                       "storage.models_uri")
    assert "shared filesystem" in issue.message
    shared = env.model_copy(update={"storage": env.storage.model_copy(update={"models_uri": "s3://b/models"})})
    assert shared_disk_warning(type(ctx)(env=shared, home=ctx.home, repo_dir=repo, revision="rev1")) is None
    assert shared_disk_warning(ctx) is None  # no work pool: nothing to say


def test_table_builds_on_a_pool_need_a_shared_server_and_a_lake_every_worker_reaches(tmp_path: Path) -> None:
    with pytest.raises(SpecErrors) as caught:
        _env(tmp_path, "name: x\nprefect:\n  api_url: http://127.0.0.1:9/api\ntables:\n  work_pool: big\n")
    assert str(caught.value).startswith("environments/x.yaml:5: tables.work_pool: work pool 'big' builds tables on other machines")
    assert "s3://" in str(caught.value)
    with pytest.raises(SpecErrors, match="tables.work_pool: work pool 'big' has remote workers"):
        _env(tmp_path, "name: x\nstorage:\n  root: s3://b/lake\ntables:\n  work_pool: big\n")
    env = _env(tmp_path, "name: x\nstorage:\n  root: s3://b/lake\nprefect:\n  api_url: http://127.0.0.1:9/api\n"
                         "tables:\n  work_pool: big\n  work_queue: cpu\n")
    assert env.tables.work_pool == "big" and env.tables.work_queue == "cpu"
    assert _env(tmp_path, "name: x\nstorage:\n  root: /mnt/shared/lake\nprefect:\n  api_url: http://127.0.0.1:9/api\n"
                          "tables:\n  work_pool: big\n").tables.work_pool == "big"  # a path every worker mounts
    assert _env(tmp_path, "name: x\n").tables.work_pool is None  # unset: the daemon's own build processes


def test_a_build_job_travels_with_secret_references_and_the_worker_puts_in_its_own_paths(tmp_path: Path, monkeypatch) -> None:
    from daemon.adapters.tables.pool import pool_job
    from flows.tables.pool import worker_job

    overrides = ("env.prefect.api_url=http://127.0.0.1:9/api", "env.storage.root=s3://b/lake", "env.tables.work_pool=big",
                 "+env.storage.storage_options.AWS_SECRET_ACCESS_KEY=${secret:LAKE_KEY}")
    desired = load_desired(ROOT, "dev", "rev1", overrides)
    ctx = context_for(desired, tmp_path / "home", prefect=False)
    table = next(r for r in desired.graph.resources if r.kind == "table")
    monkeypatch.setenv("LAKE_KEY", "lake-secret-value-123")
    job = make_adapters(ctx)["table"].job_for(table, "a" * 40)
    assert job["storage_options"]["AWS_SECRET_ACCESS_KEY"] == "lake-secret-value-123"  # the daemon's local build
    travels = pool_job(ctx, job)
    assert travels["storage_options"]["AWS_SECRET_ACCESS_KEY"] == "secret:LAKE_KEY"  # the reference, normalised
    assert "lake-secret-value-123" not in str(travels) and not {"repo_dir", "state_dir", "data_root"} & set(travels)
    local = worker_job(travels, tmp_path / "checkout", tmp_path / "state")
    assert local["storage_options"]["AWS_SECRET_ACCESS_KEY"] == "lake-secret-value-123"  # resolved on the worker
    assert local["repo_dir"] == str(tmp_path / "checkout") and local["state_dir"] == str(tmp_path / "state")
    assert local["data_root"] == str(tmp_path / "checkout" / ctx.env.storage.data_root)
    from flows.tables.build import BuildJob

    BuildJob(**local)  # every field a build takes, nothing it does not
