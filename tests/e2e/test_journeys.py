"""The four journeys of DESIGN.md, end to end, on one real daemon following a real git repository.

One daemon (module scope) converges the project's example stack — tables from the `palmerpenguins`
package, the `penguin_sex` model, the `penguin_api` A/B service, dashboards and Prometheus files — through
a real Prefect server, with training shrunk by a commit in the temp repo (5 epochs, candidates a and b,
promoted by log loss: see `tests.helpers.journeys`).
The tests then run in this order, each starting from the state the previous one left:

1. merge: everything Synced/Healthy, `/status` and `specd status --json` agree, the service answers;
2. PR: a branch edits the model and the traffic split; `specd plan --base main` names the training and
   the traffic change (text and JSON), `--detailed-exitcode` gives 2; the daemon ignores the branch;
3. rollback: a model change trains a new release that the service routes to; `git revert` restores the
   previous release with no training process, and a load loop sees zero failed requests while traffic
   moves back (the time from the revert commit to 100 % on the restored release is printed);
4. a `bentoml serve` killed with SIGKILL is restarted by the daemon's supervisor;
5. SIGTERM stops the daemon gracefully, and its services with it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from deltalake import DeltaTable

from daemon.adapters.services.supervisor import Supervisor, process_start_time
from tests.conftest import ROOT, SpecRepo
from tests.e2e.conftest import DaemonProcess
from tests.helpers.journeys import (
    MODEL,
    MODEL_SPEC,
    PENGUIN,
    SERVICE,
    SERVICE_SPEC,
    LoadLoop,
    example_epochs,
    free_service_port,
    make_stack_repo,
    model_spec,
    release,
    routing_of,
    stored_models,
    switch_time,
    training_logs,
)

pytestmark = [pytest.mark.e2e]


@dataclass
class Stack:
    repo: SpecRepo
    home: Path
    daemon: DaemonProcess
    port: int  # the service's
    converge_s: float

    def cli(self, *args: str, repo: Path | None = None, home: Path | None = None) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "daemon.cli", args[0], "--repo", str(repo or self.repo.path), "--home", str(home or self.home), *args[1:]]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **self.daemon.extra_env})

    def predict(self, user: str, client: httpx.Client | None = None) -> httpx.Response:
        url = f"http://127.0.0.1:{self.port}/predict"
        if client is not None:
            return client.post(url, json={"features": PENGUIN, "user_id": user})
        return httpx.post(url, json={"features": PENGUIN, "user_id": user}, timeout=10)

    def events(self, revision: str, kind: str = "ActionSucceeded") -> dict[str, dict]:
        return {e["resource"]: e for e in self.daemon.journal() if e["type"] == kind and e.get("revision") == revision}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, prefect_api: str):
    root = tmp_path_factory.mktemp("journeys")
    repo = make_stack_repo(root / "repo")
    home = root / "home"
    base, port = free_service_port()
    daemon = DaemonProcess(repo.path, home, prefect_api, {"SPECD_SERVICE_PORT_BASE": str(base)})
    # `--metrics-port` alone leaves the generated scrape config on the env's port (9464): give the env the real one
    daemon.extra_env["SPECD_METRICS_PORT"] = str(daemon.port)
    started = time.monotonic()
    daemon.start()
    try:
        daemon.wait_converged(repo.head(), timeout=300)
        yield Stack(repo, home, daemon, port, time.monotonic() - started)
    finally:
        daemon.stop()
        Supervisor(home).stop_all()  # only does something if the daemon died before stopping its services


def _resources(status: dict) -> dict[str, dict]:
    return {f"{r['kind']}/{r['name']}": r for r in status["resources"]}


# ---- 1. merge -----------------------------------------------------------------------------------------
def test_merge_converges_the_example_stack(stack: Stack):
    print(f"\nmerge: commit → converged in {stack.converge_s:.1f} s (daemon start, Prefect flow run, tables, training, service start)")
    head = stack.repo.head()
    status = stack.daemon.status()
    resources = _resources(status)
    tables = {p.stem for p in (stack.repo.path / "specs" / "tables").glob("*.yaml")}
    assert {k.split("/", 1)[1] for k in resources if k.startswith("table/")} == tables
    dashboards = {k.split("/", 1)[1] for k in resources if k.startswith("dashboard/")}
    assert {"ml_overview", "platform", f"model-{MODEL}", f"service-{SERVICE}"} | {f"table-{t}" for t in tables} <= dashboards
    assert f"model/{MODEL}" in resources and f"service/{SERVICE}" in resources
    unhealthy = {k: (r["sync"], r["health"], r["message"]) for k, r in resources.items() if (r["sync"], r["health"]) != ("Synced", "Healthy")}
    assert not unhealthy
    assert status["revision"] == head and status["in_sync"] and status["rejected"] is None

    for name in tables:  # real Delta tables, stamped with the revision that built them
        table = DeltaTable(str(stack.home / "lake" / "tables" / name))
        assert table.to_pyarrow_table().num_rows > 0, name
        assert head in json.dumps(table.history(1)[0], default=str), name
    gold = DeltaTable(str(stack.home / "lake" / "tables" / "gold_penguin_features")).to_pyarrow_table()
    assert gold.num_rows > 300 and set(gold.column("is_male").to_pylist()) == {0, 1}

    current = release(stack.home)
    assert current.champion and current.champion.startswith(f"{MODEL}:") and current.git_sha == head
    assert current.challengers, "the service's challenger variant needs a challenger in the release"
    assert {tag.split(":", 1)[1] for tag in (current.champion, *current.challengers)} <= stored_models(stack.home)

    variants: Counter = Counter()
    expected = routing_of(current)
    with httpx.Client(timeout=10) as client:
        for i in range(60):
            answer = stack.predict(f"user-{i}", client)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["model"] == MODEL and body["prediction"] in (0, 1) and 0.0 <= body["probability"] <= 1.0
            assert body["model_version"] == expected[body["variant"]], body
            variants[body["variant"]] += 1
        sticky = {stack.predict("user-7", client).json()["variant"] for _ in range(5)}
    assert set(variants) == {"champion", "challenger"} and variants["champion"] > variants["challenger"], variants
    assert len(sticky) == 1
    process = json.loads((stack.home / "run" / "services" / SERVICE / "process.json").read_text())
    assert process["launch"]["host"] == "127.0.0.1" and process["launch"]["port"] == stack.port

    grafana = stack.home / "grafana"
    for name in dashboards:
        board = json.loads((grafana / "dashboards" / "specd-dev" / f"specd-{name}.json").read_text())
        assert board["panels"] and board["title"], name
    prometheus = grafana / "prometheus" / "prometheus.yml"
    targets = {t for job in yaml.safe_load(prometheus.read_text())["scrape_configs"] for g in job["static_configs"] for t in g["targets"]}
    assert {f"127.0.0.1:{stack.port}", f"127.0.0.1:{stack.daemon.port}"} <= targets
    assert (grafana / "prometheus" / "rules" / f"service-{SERVICE}.yml").is_file()
    promtool = shutil.which("promtool")
    assert promtool, "the Debian package 'prometheus' provides promtool (.ci/system-packages)"
    check = subprocess.run([promtool, "check", "config", str(prometheus)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    metrics = stack.daemon.metrics()
    assert "specd_in_sync 1.0" in metrics
    assert f'specd_resource_healthy{{kind="service",name="{SERVICE}"}} 1.0' in metrics

    deadline = time.monotonic() + 10  # the status file is written at the end of the cycle
    while True:
        cli = stack.cli("status", "--json")
        assert cli.returncode == 0, cli.stderr
        data = json.loads(cli.stdout)
        if data.get("revision") == head or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert data["daemon"] == "running" and data["revision"] == head
    assert {k: (r["sync"], r["health"]) for k, r in _resources(data).items()} == {k: (r["sync"], r["health"]) for k, r in resources.items()}


# ---- 2. pull request ----------------------------------------------------------------------------------
def test_pr_plan_names_the_training_and_the_traffic_change(stack: Stack, tmp_path: Path):
    clone = tmp_path / "pr"
    subprocess.run(["git", "clone", "-q", str(stack.repo.path), str(clone)], check=True, capture_output=True)
    pr = SpecRepo(clone)
    ci_home = tmp_path / "ci-home"  # CI has no live state: plan against main as if main were applied
    same = stack.cli("plan", "--base", "main", "--detailed-exitcode", repo=clone, home=ci_home)
    assert same.returncode == 0, same.stdout + same.stderr

    pr.git("checkout", "-q", "-b", "add-challenger-c")
    model = yaml.safe_load((clone / MODEL_SPEC).read_text())
    model["candidates"]["c"] = ["model.hidden=[64,32]", "optim.lr=0.005"]
    pr.write(MODEL_SPEC, yaml.safe_dump(model, sort_keys=False))
    pr.write(SERVICE_SPEC, (clone / SERVICE_SPEC).read_text().replace("weight: 90", "weight: 80").replace("weight: 10", "weight: 20"))
    pr.commit("model: add challenger c; service: 80/20")

    text = stack.cli("plan", "--base", "main", repo=clone, home=ci_home)
    assert text.returncode == 0, text.stderr
    print("\n" + text.stdout)
    lines = text.stdout.splitlines()
    model_line = next(line for line in lines if f"model {MODEL}" in line)
    assert "update" in model_line and "train" in model_line and "(a, b, c)" in model_line, model_line
    assert any("candidates.c: (unset) →" in line for line in lines), text.stdout
    service_line = next(line for line in lines if f"service {SERVICE}" in line)
    assert "update" in service_line and "traffic champion 80 / challenger 20" in service_line, service_line
    assert not [line for line in lines if line.lstrip().startswith(("+ table", "~ table", "- table"))], "no table changes"

    as_json = stack.cli("plan", "--base", "main", "--json", repo=clone, home=ci_home)
    assert as_json.returncode == 0, as_json.stderr
    plan = json.loads(as_json.stdout)
    changed = {f"{a['kind']}/{a['name']}": a for a in plan["actions"] if a["op"] != "unchanged"}
    assert changed[f"model/{MODEL}"]["op"] == "update" and changed[f"service/{SERVICE}"]["op"] == "update"
    assert "traffic champion 80 / challenger 20" in changed[f"service/{SERVICE}"]["summary"]
    assert any(c.startswith("candidates.c: (unset) →") for c in changed[f"model/{MODEL}"]["changes"]), changed[f"model/{MODEL}"]
    assert not [k for k in changed if k.startswith("table/")]
    assert plan["base_revision"] == stack.repo.head()

    exit_code = stack.cli("plan", "--base", "main", "--detailed-exitcode", repo=clone, home=ci_home)
    assert exit_code.returncode == 2, exit_code.stdout + exit_code.stderr

    applied = len(stack.daemon.journal())  # a pushed branch is not main: the daemon deploys nothing
    pr.git("push", "-q", "origin", "add-challenger-c")
    time.sleep(1.5)
    assert stack.daemon.status()["revision"] == stack.repo.head()
    assert not [e for e in stack.daemon.journal()[applied:] if e["type"] == "ApplyStarted"]


# ---- 3. rollback ---------------------------------------------------------------------------------------
def test_revert_restores_the_champion_without_training_or_failed_requests(stack: Stack):
    home, daemon = stack.home, stack.daemon
    before = release(home)
    restored_routing = routing_of(before)

    stack.repo.write(MODEL_SPEC, model_spec(example_epochs()))
    committed = time.monotonic()
    forward = stack.repo.commit(f"penguin_sex: train {example_epochs()} epochs")
    daemon.wait_converged(forward, timeout=240)
    forward_s = time.monotonic() - committed
    after = release(home)
    assert after.fingerprint != before.fingerprint and after.git_sha == forward
    # Longer training retrains the candidates: a new champion or, when the old one still wins on the
    # holdout, new challengers. Either way the service must route to other models than before.
    new_routing = routing_of(after)
    assert new_routing != restored_routing, f"the forward change left the routing as it was: {after.decision}"
    trained = stack.events(forward)[f"model/{MODEL}"]
    assert trained["op"] == "update", trained
    with httpx.Client(timeout=10) as client:
        for i in range(20):
            body = stack.predict(f"fwd-{i}", client).json()
            assert body["model_version"] == new_routing[body["variant"]], body
    logs, models = training_logs(home), stored_models(home)
    assert logs, "training wrote its logs"
    log_offset = len(daemon.log_text())

    with LoadLoop(stack.port, threads=3, max_requests=20_000, max_s=90) as load:
        load.wait_for(lambda r: r.status == 200, 15, "answers before the revert")
        reverted_at = time.monotonic()
        stack.repo.git("revert", "--no-edit", "HEAD")
        reverted = stack.repo.head()
        load.wait_for(lambda r: r.started > reverted_at and restored_routing.get(r.variant or "") == r.version, 60, "traffic on the restored release")
        daemon.wait_converged(reverted, timeout=60)
        converged_s = time.monotonic() - reverted_at
        time.sleep(0.5)  # and a little traffic after convergence
    results = load.snapshot()
    failed = load.failures()
    assert not failed, f"{len(failed)} failed of {len(results)}: {[(f.status, f.error) for f in failed[:5]]}"
    switched, on, off = switch_time(results, restored_routing, reverted_at)
    revert_s = switched - reverted_at
    print(f"\nrollback: forward change with training {forward_s:.1f} s; git revert → 100 % traffic on the restored release "
          f"{revert_s:.2f} s (daemon converged {converged_s:.2f} s); {len(results)} requests, 0 failed, "
          f"{off} served by the new release after the revert commit; ratio forward/revert = {forward_s / revert_s:.0f}x")
    assert off > 0 and on > 0, "the load spanned the swap"
    assert revert_s < 10, f"revert took {revert_s:.1f} s (target ≤ 5 s)"

    current = release(home)
    assert current.fingerprint == before.fingerprint and current.champion == before.champion
    actions = {k: e["op"] for k, e in stack.events(reverted).items()}
    assert actions[f"model/{MODEL}"] == "restore" and "no training" in stack.events(reverted)[f"model/{MODEL}"]["message"]
    assert actions[f"service/{SERVICE}"] in ("restore", "update"), actions
    assert not [k for k in actions if k.startswith("table/")], actions
    assert training_logs(home) == logs, "a training or evaluation process ran during the revert"
    assert stored_models(home) == models
    after_revert = daemon.log_text()[log_offset:]
    assert "started train-" not in after_revert and "started evaluate-" not in after_revert
    status = _resources(daemon.status())
    assert (status[f"model/{MODEL}"]["health"], status[f"service/{SERVICE}"]["health"]) == ("Healthy", "Healthy")


# ---- 4. supervision ------------------------------------------------------------------------------------
def test_killed_service_is_restarted_by_the_supervisor(stack: Stack):
    directory = stack.home / "run" / "services" / SERVICE
    record = json.loads((directory / "process.json").read_text())
    workers = [int(p.stem) for p in (directory / "workers").glob("*.json")]
    assert workers and stack.predict("before-kill").status_code == 200

    killed = time.monotonic()
    os.kill(record["pid"], signal.SIGKILL)
    answer, restarted = None, None
    deadline = killed + 45
    while time.monotonic() < deadline:
        current = json.loads((directory / "process.json").read_text())
        if current["pid"] != record["pid"]:
            restarted = current
            try:
                answer = stack.predict("after-kill")
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code == 200:
                break
        time.sleep(0.1)
    elapsed = time.monotonic() - killed
    assert restarted is not None, "the supervisor never restarted the service"
    assert answer is not None and answer.status_code == 200, f"no answer {elapsed:.1f} s after the kill"
    print(f"\nsupervisor: kill -9 → /predict answers again in {elapsed:.1f} s (backoff {1.0:.0f} s + start-up)")
    assert elapsed < 30
    assert restarted["restarts"] == 1 and restarted["crashes"] == 1
    assert answer.json()["model_version"] == routing_of(release(stack.home))[answer.json()["variant"]]
    orphans = [pid for pid in workers if process_start_time(pid) is not None]
    assert not orphans, "the killed arbiter's workers outlived it (they would hold the port)"
    stack.daemon.wait_for(lambda s: _resources(s)[f"service/{SERVICE}"]["health"] == "Healthy", 30, "service Healthy again")


def _service_pids(directory: Path) -> set[int]:
    from daemon.adapters.services.supervisor import service_processes

    return set(service_processes(directory / "routing.json"))


# ---- 5. graceful stop -----------------------------------------------------------------------------------
def test_sigterm_stops_the_daemon_and_its_services(stack: Stack):
    routing_file = stack.home / "run" / "services" / SERVICE / "routing.json"
    assert _service_pids(routing_file.parent), "the service runs before the stop"
    assert stack.daemon.stop() == 0, stack.daemon.log_text()[-3000:]
    assert stack.daemon.journal()[-1]["type"] == "DaemonStopped"
    assert not _service_pids(routing_file.parent), "a service process outlived the daemon's graceful stop"
    with pytest.raises(httpx.ConnectError):
        stack.predict("after-stop")
