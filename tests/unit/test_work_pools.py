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
