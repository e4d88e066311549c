"""Online promotion (`propose`): the whole verdict-to-commit step against the verdict alone on the same logs.

    python tests/bench/bench_proposals.py [--size ROWS] [--repeat N]

Writes the `specd ab` benchmark's log (ROWS predictions over 14 days, 90/10, feedback for 40 %, the
challenger 2 points better) and a real git repository with the project's specs and a `promotion.online`
rule, then times, N times each, in this process:

- baseline: `evaluate` — the one ab_report DuckDB query over the Delta logs plus the verdict;
- propose: the same, plus the temporary worktree, the ruamel.yaml edit, re-validating the whole tree and
  the commit on a proposal branch (the branch is deleted between runs);
- again: `propose` when the proposal branch already exists (the idempotent no-op every later tick pays).

Prints min/median/max and the ratios propose/baseline and again/baseline: what Git and validation add to a
verdict that has to be computed anyway.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

RULE = "promotion:\n  online:\n    min_samples: 1000\n    window: 14d\n    bucket: 1 day\n"
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.invalid", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.invalid", "PATH": "/usr/bin:/bin"}
    shutil.copytree(REPO / "specs", repo / "specs")
    shutil.copytree(REPO / "environments", repo / "environments")
    service = repo / "specs" / "services" / "penguin_api.yaml"
    service.write_text(service.read_text() + RULE)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "specs"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)
    return repo


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> dict[str, float]:
    from bentos.ab_report import open_logs
    from daemon.runtime.proposals import evaluate, propose
    from daemon.runtime.reconcile import load_desired
    from tests.bench.bench_ab import write_logs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    runs: dict[str, list[float]] = {"baseline": [], "propose": [], "again": []}
    actions: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        predictions_uri, feedback_uri, _ = write_logs(root / "logs", args.size)
        repo = make_repo(root)
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        desired = load_desired(repo, "dev", sha)
        doc = desired.composed.by_key()["service/penguin_api"]

        def once():
            p, f = open_logs(predictions_uri, feedback_uri)
            return propose(repo=str(repo), branch="main", env_name="dev", home=root / "home", service="penguin_api",
                           spec_path=doc.path, spec=doc.spec, predictions=p, feedback=f, now=NOW)

        for _ in range(args.repeat):
            seconds, (_, verdict) = timed(lambda: evaluate(*open_logs(predictions_uri, feedback_uri), "penguin_api", doc.spec, now=NOW))
            runs["baseline"].append(seconds)
            seconds, result = timed(once)
            runs["propose"].append(seconds)
            actions.append(result.action)
            seconds, again = timed(once)
            runs["again"].append(seconds)
            actions.append(again.action)
            subprocess.run(["git", "branch", "-D", result.branch], cwd=repo, check=True, capture_output=True)
    for mode, seconds in runs.items():
        print(f"{mode:<9} wall min/median/max {min(seconds):.3f}/{statistics.median(seconds):.3f}/{max(seconds):.3f} s")
    base = statistics.median(runs["baseline"])
    ratio, again_ratio = statistics.median(runs["propose"]) / base, statistics.median(runs["again"]) / base
    print(f"winner: {verdict.winner}; actions per run: {actions[:2]}")
    print(f"ratio propose/baseline (wall, median) = {ratio:.2f}")
    print(f"ratio again/baseline (wall, median) = {again_ratio:.2f}")
    return {"ratio": ratio, "again_ratio": again_ratio, "proposed": float(actions[0::2] == ["proposed"] * args.repeat),
            "idempotent": float(actions[1::2] == ["exists"] * args.repeat)}


if __name__ == "__main__":
    main()
