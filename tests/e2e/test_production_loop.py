"""Issue 12's production loop, end to end, on one real daemon (`specd run`) and a real `bentoml serve`.

Production evidence comes back into Git, in one scenario on the example stack (tables from the
`palmerpenguins` package, `penguin_sex` shrunk as in `tests.helpers.journeys`, `penguin_api` split 50/50
so both variants gather feedback quickly):

1. drift: a replay of training-like traffic through `/predict` triggers nothing; a replay of the same size
   with bill length + 5 mm moves `specd_model_drift_share` over the threshold, the daemon plans a retrain
   whose plan line names the drifted feature, and the retrain runs (a new release of the same spec);
2. online A/B: `/feedback` favouring the challenger makes the daemon's proposal tick write a commit on
   `specd/proposals/penguin_api-*` with the evidence in its message (the watched branch untouched);
   merging it moves the traffic the service serves to the winner, `git revert` moves it back;
3. with `auto_promote: true` in the environment the same verdict lands on the watched branch directly,
   and the daemon applies it.

Sizes are the smallest that keep the statistics decisive (see the constants); the module costs one
stack start and two trainings.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from deltalake import DeltaTable

from daemon.adapters.services.supervisor import Supervisor
from daemon.runtime.proposals import PROPOSAL_PREFIX
from tests.conftest import ROOT, SpecRepo
from tests.e2e.conftest import DaemonProcess
from tests.helpers.drift_runs import check_runs, run_artifacts
from tests.helpers.journeys import (
    MODEL,
    MODEL_SPEC,
    PENGUIN_ONLY,
    SERVICE,
    SERVICE_SPEC,
    dump_yaml,
    free_service_port,
    make_stack_repo,
    read_yaml,
    release,
)

pytestmark = [pytest.mark.e2e]

FEATURES = ("species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year")
REPLAY_ROWS = 400  # rows per drift replay; the monitoring window is exactly this many (last N)
BATCH = 100  # rows per /predict request of a replay (the log has one row per row)
DRIFT_SHARE = 0.1  # one drifted feature of seven (0.14) crosses it
AB_REQUESTS = 260  # single-row requests with feedback; ~130 per variant at 50/50
MIN_SAMPLES = 80
ACCURACY = {"champion": 0.5, "challenger": 0.95}  # what the fed-back labels make of each variant


def _model_spec(path: Path) -> str:
    spec = read_yaml(path)
    # Per-column threshold 0.3: resamples of 400 training-like rows score up to 0.14 (normalised Wasserstein,
    # measured over 30 seeds); bill length + 5 mm scored 0.42 in a check that saw the window only half shifted
    # (the daemon checks every cycle, while the replay's rows are still being flushed).
    spec["monitoring"] = {"window": {"last": REPLAY_ROWS, "min_rows": REPLAY_ROWS // 2}, "interval_s": 1,
                          "drift_share": DRIFT_SHARE, "threshold": 0.3}
    spec["retrain"] = {"on": "drift"}
    spec["calibration"] = {"method": "platt"}
    return dump_yaml(spec, "The example model, calibrated, monitored for drift, retrained on drift.")


def _service_spec(path: Path) -> str:
    spec = read_yaml(path)
    spec["variants"] = [{"name": "champion", "role": "champion", "weight": 50},
                        {"name": "challenger", "role": "challenger", "weight": 50}]
    spec["prediction_log"] = {"enabled": True, "flush_interval_s": 0.3}
    spec["promotion"] = {"online": {"metric": "accuracy", "min_samples": MIN_SAMPLES, "alpha": 0.05, "tau": 0.2,
                                    "window": "1h", "bucket": "1 minute", "check_every_minutes": 0.05,
                                    "max_latency_p99_ms": 60_000}}
    return dump_yaml(spec, "The example service, 50/50, promoted online by accuracy from feedback.")


@dataclass
class Loop:
    repo: SpecRepo
    home: Path
    daemon: DaemonProcess
    port: int
    rows: list[dict[str, Any]]  # gold_penguin_features, as the daemon built it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def replay(self, shift_mm: float, seed: int) -> None:
        """REPLAY_ROWS training-like rows (bill length + shift_mm) through /predict, in batches."""
        rng = random.Random(seed)
        with httpx.Client(timeout=30) as client:
            for start in range(0, REPLAY_ROWS, BATCH):
                instances = []
                for _ in range(BATCH):
                    row = rng.choice(self.rows)
                    features = {name: row[name] for name in FEATURES}
                    features["bill_length_mm"] = features["bill_length_mm"] + shift_mm
                    instances.append(features)
                answer = client.post(f"{self.url}/predict", json={"instances": instances, "user_id": f"replay-{seed}-{start}"})
                assert answer.status_code == 200, answer.text

    def gauge(self, name: str) -> float | None:
        match = re.search(rf'^{name}{{model="{MODEL}"}} (\S+)$', self.daemon.metrics(), re.M)
        return float(match.group(1)) if match else None

    def wait_drift_window(self, rows: int, timeout: float = 60) -> float:
        """Wait until the daemon's drift check has seen `rows` rows of this release; returns the drift share."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.gauge("specd_model_drift_window_rows") or 0) >= rows:
                share = self.gauge("specd_model_drift_share")
                assert share is not None
                return share
            time.sleep(0.3)
        raise AssertionError(f"the drift check never saw {rows} rows: {self.gauge('specd_model_drift_window_rows')}\n"
                             + self.daemon.log_text()[-3000:])

    def served_weights(self, n: int = 60) -> Counter:
        with httpx.Client(timeout=10) as client:
            return Counter(client.post(f"{self.url}/predict", json={"features": self.feature_row(i), "user_id": f"w-{time.time_ns()}-{i}"})
                           .json()["variant"] for i in range(n))

    def feature_row(self, i: int) -> dict[str, Any]:
        return {name: self.rows[i % len(self.rows)][name] for name in FEATURES}

    def live_weights(self) -> dict[str, float]:
        from bentos.routing import read_routing

        return {v.name: v.weight for v in read_routing(Supervisor(self.home).routing_file(SERVICE)).variants}

    def wait_weights(self, weights: dict[str, float], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.live_weights() == pytest.approx(weights):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"routing never became {weights}: {self.live_weights()}")

    def proposals(self) -> list[str]:
        out = self.repo.git("for-each-ref", "--format=%(refname:short)", f"refs/heads/{PROPOSAL_PREFIX}")
        return [line for line in out.splitlines() if line]

    def model_plans(self, since: int) -> list[dict[str, Any]]:
        return [entry for e in self.daemon.journal()[since:] if e["type"] == "ApplyStarted"
                for entry in e.get("plan", []) if entry["resource"] == f"model/{MODEL}"]


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, prefect_api: str):
    root = tmp_path_factory.mktemp("loop")
    repo = make_stack_repo(root / "repo", tables=PENGUIN_ONLY, dashboards=False)
    repo.write(MODEL_SPEC, _model_spec(repo.path / MODEL_SPEC))
    repo.write(SERVICE_SPEC, _service_spec(repo.path / SERVICE_SPEC))
    dev = read_yaml(repo.path / "environments" / "dev.yaml")
    dev["daemon"]["poll_interval_s"] = 1  # the drift check runs in every cycle's observe
    repo.write("environments/dev.yaml", dump_yaml(dev, "dev, a short poll for the drift check"))
    repo.commit("monitoring, retrain on drift, online promotion")
    home = root / "home"
    base, port = free_service_port()
    daemon = DaemonProcess(repo.path, home, prefect_api, {"SPECD_SERVICE_PORT_BASE": str(base)})
    daemon.start()
    try:
        daemon.wait_converged(repo.head(), timeout=240)
        rows = DeltaTable(str(home / "lake" / "tables" / "gold_penguin_features")).to_pyarrow_table().to_pylist()
        yield Loop(repo, home, daemon, port, rows)
    finally:
        daemon.stop()
        Supervisor(home).stop_all()  # only does something if the daemon died before stopping its services


# ---- 0. calibration -------------------------------------------------------------------------------------
def test_the_service_serves_the_calibrated_probabilities(loop: Loop):
    """`calibration: {method: platt}`: fitted after training, stored with the model, applied by `bentoml serve`."""
    import torch

    from flows.training.artifact import load_predictor, read_model_info
    from flows.training.calibration import apply
    from tests.helpers.journeys import store_root

    current = release(loop.home)
    for tag in (current.champion, *current.challengers):
        metrics = read_model_info(tag, store_root(loop.home))["metadata"]["metrics"]
        assert {"ece", "ece_uncalibrated"} <= set(metrics), metrics
    moved = 0.0
    with httpx.Client(timeout=10) as client:
        for i in range(12):
            body = client.post(f"{loop.url}/predict", json={"features": loop.feature_row(i), "user_id": f"cal-{i}"}).json()
            predictor = load_predictor(body["model_version"], store_root(loop.home))
            assert predictor.config["calibration"]["method"] == "platt"
            matrix = torch.from_numpy(predictor.transform({k: [v] for k, v in loop.feature_row(i).items()}))
            with torch.inference_mode():
                raw = torch.sigmoid(predictor.network(matrix).float()[:, 0]).double().numpy()
            assert body["probability"] == pytest.approx(float(apply(predictor.config["calibration"], raw)[0]), abs=1e-9)
            moved = max(moved, abs(body["probability"] - float(raw[0])))
    assert moved > 1e-4, "the served probabilities are the raw network's"
    models = subprocess.run([sys.executable, "-m", "daemon.cli", "models", MODEL, "--home", str(loop.home)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert models.returncode == 0, models.stderr
    assert re.search(r"ece \d\.\d{4}, ece_uncalibrated \d\.\d{4}", models.stdout), models.stdout


def test_tensorboard_has_each_candidates_hparams_and_per_epoch_validation_curves(loop: Loop):
    """The training run's event files, read back with TensorBoard's own EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from tests.helpers.journeys import SHRUNK_EPOCHS

    current = release(loop.home)
    runs = loop.home / "logs" / "tensorboard" / MODEL
    seen = {}
    for tag in (current.champion, *current.challengers):
        accumulator = EventAccumulator(str(runs / tag.split(":", 1)[1]))
        accumulator.Reload()
        scalars = accumulator.Tags()["scalars"]
        assert {"val/roc_auc", "val/log_loss", "val/accuracy", "train/loss", "holdout/roc_auc"} <= set(scalars), scalars
        assert [e.step for e in accumulator.Scalars("val/log_loss")] == list(range(SHRUNK_EPOCHS))
        content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        values = {k: v.string_value or v.number_value for k, v in hparams.items()}
        seen[values["candidate"]] = values
        assert values["trainer.epochs"] == SHRUNK_EPOCHS and "optim.lr" in values and values["calibration.method"] == "platt"
        assert "hp/roc_auc" in scalars
    assert set(seen) == {"a", "b"}, seen
    assert seen["a"]["overrides"] == "(base config)" and seen["a"]["model.hidden"] == "[32, 16]"
    assert seen["b"]["overrides"] == "model.hidden=[128,64] optim.lr=0.003" and seen["b"]["optim.lr"] == pytest.approx(0.003)


# ---- 1. drift ------------------------------------------------------------------------------------------
def test_shifted_traffic_retrains_and_a_no_drift_replay_does_not(loop: Loop, prefect_api: str):
    first = release(loop.home)
    assert first.champion and first.challengers
    offset = len(loop.daemon.journal())

    loop.replay(0.0, seed=1)
    share = loop.wait_drift_window(REPLAY_ROWS)
    time.sleep(2.5)  # a few more cycles on the same window
    assert share < DRIFT_SHARE, share
    assert loop.gauge("specd_model_drift_detected") == 0.0
    assert loop.model_plans(offset) == [], "a no-drift replay planned a model change"
    assert release(loop.home).created_at == first.created_at

    loop.replay(5.0, seed=2)  # the same size, bill length + 5 mm: the window now holds only shifted rows
    deadline = time.monotonic() + 60
    while not loop.model_plans(offset) and time.monotonic() < deadline:
        time.sleep(0.3)
    (plan,) = loop.model_plans(offset)[:1]
    assert plan["op"] == "update" and "production drift" in plan["reason"] + plan["summary"], plan
    assert "features drifted: bill_length_mm" in plan["summary"], plan
    assert "bill_depth_mm" not in plan["summary"] and "retrain on the table's latest data version" in plan["summary"]
    score = re.search(r'^specd_model_feature_drift{feature="bill_length_mm",model="penguin_sex"} (\S+)$', loop.daemon.metrics(), re.M)
    assert score and float(score.group(1)) > 0.3, loop.daemon.metrics()
    assert (loop.gauge("specd_model_drift_share") or 0) >= DRIFT_SHARE
    # the daemon's due checks are `specd-drift-check` flow runs; the one that saw the shift reports bill_length_mm
    runs = [r for r in check_runs(prefect_api, loop.repo.head()) if f"model:{MODEL}" in r["tags"] and "env:dev" in r["tags"]]
    assert runs and {r["state_type"] for r in runs} == {"COMPLETED"}, [(r["name"], r["state_type"]) for r in runs]
    reports = [a["data"] for r in runs for a in run_artifacts(prefect_api, r["id"]) if a["type"] == "markdown"]
    assert any("dataset drift" in text and "`bill_length_mm` | numeric" in text for text in reports), reports[-1:]

    def retrained(status: dict[str, Any]) -> bool:
        return bool(status.get("in_sync")) and any(e["type"] == "ActionSucceeded" and e.get("resource") == f"model/{MODEL}"
                                                   for e in loop.daemon.journal()[offset:])

    loop.daemon.wait_for(retrained, 180, "the drift retrain")
    second = release(loop.home)
    assert second.created_at > first.created_at and second.champion
    assert second.fingerprint == first.fingerprint  # same spec: production drift retrained it
    assert second.data.get("delta_version") is not None
    # the new release starts a fresh window: nothing more is planned for the old traffic
    time.sleep(2.5)
    assert len(loop.model_plans(offset)) == 1, loop.model_plans(offset)


# ---- 2. online A/B → proposal → merge → revert ---------------------------------------------------------
def _feed_ab(loop: Loop, seed: int) -> Counter:
    rng = random.Random(seed)
    served: Counter = Counter()
    with httpx.Client(timeout=10) as client:
        for i in range(AB_REQUESTS):
            answer = client.post(f"{loop.url}/predict", json={"features": loop.feature_row(i), "user_id": f"ab-{seed}-{i}"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            served[body["variant"]] += 1
            right = rng.random() < ACCURACY[body["variant"]]
            label = body["prediction"] if right else 1 - int(body["prediction"])
            fed = client.post(f"{loop.url}/feedback", json={"request_id": body["request_id"], "label": label, "variant": body["variant"]})
            assert fed.status_code == 202, fed.text
    return served


def test_feedback_for_the_challenger_proposes_a_commit_that_merge_applies_and_revert_undoes(loop: Loop):
    main_before = loop.repo.head()
    assert loop.proposals() == []
    served = _feed_ab(loop, seed=3)
    assert min(served.values()) >= MIN_SAMPLES, served

    deadline = time.monotonic() + 60
    while not loop.proposals() and time.monotonic() < deadline:
        time.sleep(0.3)
    (branch,) = loop.proposals() or [None]
    assert branch and branch.startswith(f"{PROPOSAL_PREFIX}{SERVICE}-"), loop.daemon.log_text()[-3000:]
    assert loop.repo.head() == main_before, "without auto_promote the watched branch is untouched"
    message = loop.repo.git("log", "-1", "--format=%B", branch)
    assert "promote challenger over champion in service penguin_api" in message
    evidence = json.loads(message.split("Specd-Evidence: ", 1)[1])
    assert evidence["winner"] == "challenger" and evidence["lift"] > 0.2 and evidence["lift_ci"][0] > 0
    assert min(evidence["n"].values()) >= MIN_SAMPLES and evidence["always_valid_p"] < 0.05
    assert loop.repo.git("diff", "--name-only", "main", branch) == SERVICE_SPEC

    loop.repo.git("merge", "--ff-only", "-q", branch)
    merged = loop.repo.head()
    loop.daemon.wait_converged(merged, timeout=90)
    loop.wait_weights({"champion": 0.0, "challenger": 1.0})
    assert loop.served_weights() == Counter({"challenger": 60})

    loop.repo.git("revert", "--no-edit", "HEAD")
    reverted = loop.repo.head()
    loop.daemon.wait_converged(reverted, timeout=90)
    loop.wait_weights({"champion": 0.5, "challenger": 0.5})
    back = loop.served_weights()
    assert set(back) == {"champion", "challenger"}, back
    time.sleep(3)  # several proposal ticks: the reverted proposal is not proposed again
    assert loop.proposals() == [branch] and loop.repo.head() == reverted


# ---- 3. auto_promote -----------------------------------------------------------------------------------
def test_auto_promote_commits_the_verdict_to_the_watched_branch(loop: Loop):
    open_before = loop.proposals()
    dev = read_yaml(loop.repo.path / "environments" / "dev.yaml")
    dev["auto_promote"] = True
    loop.repo.write("environments/dev.yaml", dump_yaml(dev, "dev: online verdicts land on main"))
    enabled = loop.repo.commit("auto_promote: true")
    deadline = time.monotonic() + 60
    while loop.repo.head() == enabled and time.monotonic() < deadline:
        time.sleep(0.3)
    promoted = loop.repo.head()
    assert promoted != enabled, "no commit on the watched branch: " + loop.daemon.log_text()[-3000:]
    assert loop.repo.git("rev-parse", f"{promoted}~1") == enabled
    assert "online A/B verdict" in loop.repo.git("log", "-1", "--format=%s", promoted)
    assert loop.repo.git("status", "--porcelain", "--untracked-files=no") == ""  # the checkout moved with its branch
    loop.daemon.wait_converged(promoted, timeout=90)
    loop.wait_weights({"champion": 0.0, "challenger": 1.0})
    assert loop.proposals() == open_before  # no new proposal branch
