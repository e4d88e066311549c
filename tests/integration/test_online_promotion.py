"""Online A/B verdicts become Git commits: real git repositories, real Delta logs, the real ab_report query."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bentos.ab_report import open_logs, rows_to_tables
from daemon.runtime.proposals import PROPOSAL_PREFIX, edit_weights, open_proposals, propose
from daemon.runtime.reconcile import load_desired
from tests.conftest import ROOT, SpecRepo

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SERVICE_PATH = "specs/services/penguin_api.yaml"
RULE = """promotion:
  online:
    metric: accuracy
    min_samples: 500
    alpha: 0.05
    window: 2d
"""


def write_logs(root: Path, counts: dict[str, int], accuracy: dict[str, float], *, now: datetime = NOW,
               uris: tuple[str, str] | None = None, fingerprint: str = "r1",
               failures: dict[str, int] | None = None) -> tuple[str, str]:
    """A prediction and a feedback Delta log as the service writes them (one row per request, labels later;
    `failures`: server errors per variant, logged as the service does, with a NULL prediction)."""
    from deltalake import write_deltalake

    predictions, feedback = [], []
    for variant, n in (failures or {}).items():
        for i in range(n):
            predictions.append({"request_id": f"{variant}-failed-{i}", "row": 0, "ts": now - timedelta(hours=10, seconds=i),
                                "service": "penguin_api", "variant": variant, "model_tag": f"penguin_sex:{variant}",
                                "routing_fingerprint": fingerprint, "prediction": None, "latency_ms": 900.0})
    for variant, n in counts.items():
        hits = round(n * accuracy[variant])
        for i in range(n):
            rid = f"{variant}-{i}"
            ts = now - timedelta(hours=20) + timedelta(seconds=i * 60 * 60 * 19 // n)
            predictions.append({"request_id": rid, "row": 0, "ts": ts, "service": "penguin_api", "variant": variant,
                                "model_tag": f"penguin_sex:{variant}", "routing_fingerprint": fingerprint, "prediction": "male",
                                "probability": 0.8, "latency_ms": 4.0 + (i % 7)})
            feedback.append({"request_id": rid, "row": 0, "ts": ts + timedelta(minutes=5), "service": "penguin_api",
                             "variant": variant, "label": "male" if (i * 7919) % n < hits else "female"})
    p, f = rows_to_tables(predictions, feedback)
    uris = uris or (str(root / "predictions"), str(root / "feedback"))
    write_deltalake(uris[0], p)
    write_deltalake(uris[1], f)
    return uris


@pytest.fixture
def repo(spec_repo: SpecRepo) -> SpecRepo:
    shutil.copytree(ROOT / "specs", spec_repo.path / "specs")
    service = spec_repo.path / SERVICE_PATH
    service.write_text(service.read_text() + RULE)
    spec_repo.commit("specs with an online promotion rule")
    return spec_repo


def run_propose(repo: SpecRepo, home: Path, logs: tuple[str, str], *, url: str | None = None, auto: bool | None = None):
    desired = load_desired(repo.path, "dev", repo.head())
    doc = desired.composed.by_key()["service/penguin_api"]
    predictions, feedback = open_logs(*logs)
    return propose(repo=url or str(repo.path), branch="main", env_name="dev", home=home, service="penguin_api",
                   spec_path=doc.path, spec=doc.spec, predictions=predictions, feedback=feedback,
                   auto_promote=desired.composed.env.auto_promote if auto is None else auto, now=NOW)


def specd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)}, check=False)


def proposal_branches(git: SpecRepo) -> list[str]:
    return [b for b in git.git("for-each-ref", "--format=%(refname:short)", "refs/heads/").splitlines() if b.startswith(PROPOSAL_PREFIX)]


def test_winning_challenger_creates_one_validated_proposal(repo: SpecRepo, home: Path, tmp_path: Path):
    logs = write_logs(tmp_path / "logs", {"champion": 4500, "challenger": 500}, {"champion": 0.70, "challenger": 0.90})
    main_before = repo.head()
    result = run_propose(repo, home, logs)
    assert result.action == "proposed", result.reasons
    assert proposal_branches(repo) == [result.branch] and result.branch.startswith("specd/proposals/penguin_api-")
    assert repo.head() == main_before and repo.git("status", "--porcelain") == ""  # the user's checkout untouched

    # the commit changes only the two weight lines, the rest of the file (comments included) survives
    diff = repo.git("diff", "main", result.branch, "--unified=0", "--", SERVICE_PATH)
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert sorted(changed) == ["+    weight: 0", "+    weight: 100", "-    weight: 10", "-    weight: 90"]
    assert repo.git("diff", "--name-only", "main", result.branch) == SERVICE_PATH

    message = repo.git("log", "-1", "--format=%B", result.branch)
    assert "promote challenger over champion in service penguin_api" in message
    evidence = json.loads(message.split("Specd-Evidence: ", 1)[1])
    assert evidence["n"] == {"champion": 4500, "challenger": 500}
    assert evidence["lift"] == pytest.approx(0.20, abs=1e-3)
    assert evidence["lift_ci"][0] > 0.15 and evidence["always_valid_p"] < 1e-6 and evidence["srm_p"] > 0.001
    assert "95% CI" in message and "Window" in message

    # the proposal's tree passes `specd validate`
    check = tmp_path / "check"
    repo.git("worktree", "add", "--detach", str(check), result.branch)
    validated = specd("validate", "--repo", str(check), "--home", str(home), cwd=check)
    assert validated.returncode == 0, validated.stderr

    # idempotent: the same evidence (and more of it) proposes nothing new
    again = run_propose(repo, home, logs)
    assert again.action == "exists" and proposal_branches(repo) == [result.branch]
    assert [p.branch for p in open_proposals(Path(repo.git("rev-parse", "--absolute-git-dir")), "main")] == [result.branch]

    # merge it, then revert it: the spec comes back exactly, and the reverted change is not proposed again
    original = (repo.path / SERVICE_PATH).read_text()
    repo.git("merge", "--ff-only", "-q", result.branch)
    assert 'weight: 100' in (repo.path / SERVICE_PATH).read_text()
    assert open_proposals(Path(repo.git("rev-parse", "--absolute-git-dir")), "main") == []
    assert run_propose(repo, home, logs).action == "unchanged"
    repo.git("revert", "--no-edit", "HEAD")
    assert (repo.path / SERVICE_PATH).read_text() == original
    assert run_propose(repo, home, logs).action == "exists"


def test_auto_promote_commits_to_the_watched_branch(repo: SpecRepo, home: Path, tmp_path: Path):
    env = repo.path / "environments" / "dev.yaml"
    env.write_text(env.read_text() + "auto_promote: true\n")
    before = repo.commit("auto promote")
    logs = write_logs(tmp_path / "logs", {"champion": 4500, "challenger": 500}, {"champion": 0.70, "challenger": 0.90})
    result = run_propose(repo, home, logs)
    assert result.action == "promoted" and result.branch == "main"
    assert repo.git("rev-parse", "main") == result.commit and repo.git("rev-parse", "main~1") == before
    assert "weight: 100" in repo.git("show", f"main:{SERVICE_PATH}")
    assert proposal_branches(repo) == []
    assert run_propose(repo, home, logs).action == "unchanged"  # already promoted: nothing more


@pytest.mark.parametrize("counts, accuracy, reason", [
    ({"champion": 4500, "challenger": 500}, {"champion": 0.80, "challenger": 0.80}, "always-valid p"),
    ({"champion": 2500, "challenger": 2500}, {"champion": 0.70, "challenger": 0.90}, "sample ratio mismatch"),
    ({"champion": 900, "challenger": 100}, {"champion": 0.70, "challenger": 0.90}, "needs 500 per variant"),
])
def test_tie_srm_or_small_sample_gives_no_proposal(repo: SpecRepo, home: Path, tmp_path: Path, counts, accuracy, reason):
    logs = write_logs(tmp_path / "logs", counts, accuracy)
    result = run_propose(repo, home, logs)
    assert result.action == "no-verdict" and any(reason in r for r in result.reasons), result.reasons
    assert proposal_branches(repo) == []


def test_remote_repository_receives_the_pushed_branch(repo: SpecRepo, home: Path, tmp_path: Path):
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "--bare", "-q", str(repo.path), str(bare)], check=True)
    logs = write_logs(tmp_path / "logs", {"champion": 4500, "challenger": 500}, {"champion": 0.70, "challenger": 0.90})
    result = run_propose(repo, home, logs, url=f"file://{bare}")
    assert result.action == "proposed"
    remote = SpecRepo(bare)
    assert remote.git("rev-parse", f"refs/heads/{result.branch}") == result.commit
    assert "weight: 100" in remote.git("show", f"{result.branch}:{SERVICE_PATH}")
    assert run_propose(repo, home, logs, url=f"file://{bare}").action == "exists"


def test_edit_keeps_the_file_and_refuses_what_it_cannot_see():
    text = (ROOT / SERVICE_PATH).read_text()
    new, changes = edit_weights(text, "champion", "challenger")
    assert changes == {"champion": (90, 0), "challenger": (10, 100)}
    assert [a for a in text.splitlines() if "weight" not in a] == [b for b in new.splitlines() if "weight" not in b]
    assert edit_weights(new, "champion", "challenger") is None


def test_cli_propose_then_merge_moves_traffic_and_revert_moves_it_back(repo: SpecRepo, home: Path, tmp_path: Path):
    """`specd ab --propose` against a deployed service's routing file and logs; the merged spec's routing (what
    the services adapter writes for the workers) sends all traffic to the winner, the revert restores 90/10."""
    from bentos.routing import write_routing
    from daemon.adapters.services.desired_routing import build_routing
    from daemon.adapters.services.supervisor import Supervisor
    from daemon.shared.paths import bentoml_home
    from tests.helpers.services import make_models, release

    tags = make_models(home)
    release(home, "fp1", tags["a"], (tags["b"],))

    def routing_of(rev: str):
        spec = load_desired(repo.path, "dev", rev).composed.by_key()["service/penguin_api"].spec
        routing, _ = build_routing("penguin_api", spec, fingerprint=f"f-{rev[:8]}", revision=rev,
                                   store=bentoml_home(home), storage_root=str(tmp_path / "lake"))
        return routing

    live = routing_of(repo.head())
    assert {v.name: v.weight for v in live.variants} == pytest.approx({"champion": 0.9, "challenger": 0.1})
    write_routing(Supervisor(home).routing_file("penguin_api"), live)
    log = live.settings["prediction_log"]
    write_logs(tmp_path, {"champion": 4500, "challenger": 500}, {"champion": 0.70, "challenger": 0.90},
               now=datetime.now(UTC), uris=(log["predictions_uri"], log["feedback_uri"]), fingerprint=live.fingerprint)

    out = specd("ab", "penguin_api", "--propose", "--repo", str(repo.path), "--home", str(home), cwd=repo.path)
    assert out.returncode == 0, out.stderr
    branch = next(line.split()[2] for line in out.stdout.splitlines() if line.startswith("propose: proposed"))
    status = specd("status", "--repo", str(repo.path), "--home", str(home), "--json", cwd=repo.path)
    assert [p["branch"] for p in json.loads(status.stdout)["open_proposals"]] == [branch]
    listed = specd("ab", "penguin_api", "--repo", str(repo.path), "--home", str(home), cwd=repo.path)
    assert f"open proposal: {branch}" in listed.stdout

    repo.git("merge", "--ff-only", "-q", branch)
    assert {v.name: v.weight for v in routing_of(repo.head()).variants} == {"champion": 0.0, "challenger": 1.0}
    repo.git("revert", "--no-edit", "HEAD")
    assert {v.name: v.weight for v in routing_of(repo.head()).variants} == pytest.approx({"champion": 0.9, "challenger": 0.1})
    again = specd("ab", "penguin_api", "--propose", "--repo", str(repo.path), "--home", str(home), cwd=repo.path)
    assert "propose: exists" in again.stdout  # the reverted proposal is not proposed again


def test_daemon_hook_evaluates_each_rule_at_most_every_n_minutes(repo: SpecRepo, home: Path, monkeypatch):
    from daemon.runtime import proposals

    desired = load_desired(repo.path, "dev", repo.head())
    clock = [0.0]
    ticker = proposals.ProposalTicker(lambda: desired, str(repo.path), "main", "dev", home, clock=lambda: clock[0])
    calls: list[str] = []
    monkeypatch.setattr(ticker, "run_one", lambda doc, auto: calls.append(doc.name))

    def tick() -> None:
        ticker.tick()
        if ticker.thread is not None:
            ticker.thread.join(10)

    tick()
    clock[0] = 14 * 60.0
    tick()
    assert calls == ["penguin_api"]  # check_every_minutes: 15 (default)
    clock[0] = 15 * 60.0
    tick()
    assert calls == ["penguin_api", "penguin_api"]
    assert proposals.live_logs(home, "penguin_api") is None  # not deployed: the real run_one does nothing


def test_latency_guardrail_blocks_a_slow_winner(repo: SpecRepo, tmp_path: Path):
    from daemon.runtime.proposals import evaluate

    doc = load_desired(repo.path, "dev", repo.head()).composed.by_key()["service/penguin_api"]
    data = doc.spec.model_dump(mode="json")
    data["promotion"]["online"]["max_latency_p99_ms"] = 5.0
    slow = type(doc.spec).model_validate(data)
    logs = write_logs(tmp_path / "logs", {"champion": 4500, "challenger": 500}, {"champion": 0.70, "challenger": 0.90})
    _, verdict = evaluate(*open_logs(*logs), "penguin_api", slow, now=NOW)
    assert verdict.winner is None and any("guardrail: latency p99" in r for r in verdict.reasons), verdict.reasons
    _, verdict = evaluate(*open_logs(*logs), "penguin_api", doc.spec, now=NOW)
    assert verdict.winner == "challenger"


def test_rule_names_an_existing_champion_variant():
    from pydantic import ValidationError

    from daemon.schema.service import ServiceSpec

    base = {"model": "m", "variants": [{"name": "a", "role": "champion", "weight": 1}]}
    with pytest.raises(ValidationError, match="promotion.online.champion"):
        ServiceSpec.model_validate({**base, "promotion": {"online": {"champion": "nope"}}})
    with pytest.raises(ValidationError, match="window"):
        ServiceSpec.model_validate({**base, "promotion": {"online": {"champion": "a", "window": "soon"}}})


def test_daemon_hook_proposes_from_the_deployed_routing_and_its_logs(repo: SpecRepo, home: Path, tmp_path: Path):
    """The real hook path: live routing file → its Delta logs → SRM over the current routing → a proposal."""
    from bentos.routing import Routing, Variant, write_routing
    from daemon.adapters.services.supervisor import Supervisor
    from daemon.runtime.proposals import ProposalTicker

    settings = {"prediction_log": {"predictions_uri": str(tmp_path / "p"), "feedback_uri": str(tmp_path / "f"), "storage_options": {}}}
    routing = Routing("penguin_api", "live-fp", repo.head(), "penguin_sex",
                      (Variant("champion", "penguin_sex:a", 0.9, "champion"), Variant("challenger", "penguin_sex:b", 0.1, "challenger")),
                      "user_id", None, settings)
    write_routing(Supervisor(home).routing_file("penguin_api"), routing)
    desired = load_desired(repo.path, "dev", repo.head())
    ticker = ProposalTicker(lambda: desired, str(repo.path), "main", "dev", home)
    doc = desired.composed.by_key()["service/penguin_api"]

    # logged under the live routing fingerprint: the SRM check counts these requests against its 90/10
    write_logs(tmp_path, {"champion": 4500, "challenger": 500}, {"champion": 0.70, "challenger": 0.90},
               now=datetime.now(UTC), uris=(str(tmp_path / "p"), str(tmp_path / "f")), fingerprint="live-fp")
    result = ticker.run_one(doc, auto=False)
    assert result is not None and result.action == "proposed", result and result.reasons
    assert proposal_branches(repo) == [result.branch]
    assert "srm_p" in repo.git("log", "-1", "--format=%B", result.branch)


def test_auto_promote_keeps_the_users_checkout_consistent(repo: SpecRepo, home: Path, tmp_path: Path):
    """The watched branch checked out in the repository itself: a clean checkout moves with the commit (no
    stale spec staged for the user's next commit to revert); a dirty one is left alone and gets a proposal."""
    env = repo.path / "environments" / "dev.yaml"
    env.write_text(env.read_text() + "auto_promote: true\n")
    repo.commit("auto promote")
    logs = write_logs(tmp_path / "logs", {"champion": 4500, "challenger": 500}, {"champion": 0.70, "challenger": 0.90})
    (repo.path / "README.local").write_text("untracked files do not count\n")
    result = run_propose(repo, home, logs)
    assert result.action == "promoted" and repo.git("rev-parse", "HEAD") == result.commit
    assert repo.git("status", "--porcelain", "--untracked-files=no") == ""
    assert "weight: 100" in (repo.path / SERVICE_PATH).read_text()

    repo.git("revert", "--no-edit", "HEAD")
    reverted = repo.head()
    (repo.path / "environments" / "dev.yaml").write_text(env.read_text() + "# a local edit, not committed\n")
    held = run_propose(repo, home, logs)
    assert held.action == "proposed" and held.branch.startswith(PROPOSAL_PREFIX), held
    assert any("uncommitted changes" in r for r in held.reasons), held.reasons
    assert repo.head() == reverted and "a local edit" in env.read_text()
    assert "weight: 90" in (repo.path / SERVICE_PATH).read_text()


def test_error_rate_guardrail_blocks_a_failing_winner(repo: SpecRepo, tmp_path: Path):
    """Failed requests are logged rows with no prediction: counted per variant over the rule's window, kept out
    of the latency quantiles, and a winner failing more often than max_error_rate (default slo.error_rate) gets
    no verdict."""
    from bentos.ab_report import build_report, query, render
    from daemon.runtime.proposals import evaluate

    doc = load_desired(repo.path, "dev", repo.head()).composed.by_key()["service/penguin_api"]
    counts, accuracy = {"champion": 4500, "challenger": 500}, {"champion": 0.70, "challenger": 0.90}
    # 25 failures on 525 challenger requests: 4.8 %, over the example's slo.error_rate of 1 %
    logs = write_logs(tmp_path / "failing", counts, accuracy, failures={"challenger": 25, "champion": 10})
    totals, buckets = query(*open_logs(*logs), bucket="1 hour")
    report = build_report("penguin_api", totals, buckets)
    by_name = {v.variant: v for v in report.variants}
    assert (by_name["challenger"].errors, by_name["challenger"].requests) == (25, 525)
    assert by_name["champion"].errors == 10 and by_name["challenger"].feedback == 500
    assert by_name["challenger"].latency_p99_ms < 20  # the 900 ms failures are not in the latency quantiles
    assert "failed requests: champion 10/4510" in render(report)
    _, verdict = evaluate(*open_logs(*logs), "penguin_api", doc.spec, now=NOW)
    assert verdict.winner is None and any("guardrail: error rate 4.76% (25 of 525 requests failed) over 1.00%" in r
                                          for r in verdict.reasons), verdict.reasons

    data = doc.spec.model_dump(mode="json")
    data["promotion"]["online"]["max_error_rate"] = 0.05
    tolerant = type(doc.spec).model_validate(data)
    _, verdict = evaluate(*open_logs(*logs), "penguin_api", tolerant, now=NOW)
    assert verdict.winner == "challenger", verdict.reasons
    few = write_logs(tmp_path / "few", counts, accuracy, failures={"challenger": 5})  # 0.99 %: under 1 %
    _, verdict = evaluate(*open_logs(*few), "penguin_api", doc.spec, now=NOW)
    assert verdict.winner == "challenger", verdict.reasons


def test_the_service_logs_a_server_error_as_a_prediction_row_without_prediction():
    """ABService._log_failure (the class BentoML wraps), the path both 5xx branches of /predict take (a fake log at our own boundary)."""
    from types import SimpleNamespace

    from bentos.ab_service import ABService

    recorded: list[dict] = []
    from bentos.request_ids import RequestIds

    service = SimpleNamespace(logs={"predictions": SimpleNamespace(record=recorded.append)}, _request_id=RequestIds())
    routing = SimpleNamespace(service="penguin_api", fingerprint="fp1")
    live = SimpleNamespace(routing=routing, variants={"challenger": SimpleNamespace(tag="penguin_sex:b")})
    ABService.inner._log_failure(service, live, "challenger", 0.25)
    ABService.inner._log_failure(service, live, "none", 0.1)  # failed before a variant was chosen: nobody's error
    ABService.inner._log_failure(service, None, "challenger", 0.1)
    (row,) = recorded
    assert row["prediction"] is None and row["features"] is None and row["row"] == 0
    assert (row["variant"], row["model_tag"], row["routing_fingerprint"]) == ("challenger", "penguin_sex:b", "fp1")
    assert row["latency_ms"] == 250.0
