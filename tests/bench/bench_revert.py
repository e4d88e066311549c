"""Benchmark: `git revert` of a model change → 100 % of traffic on the restored release, against the
forward change that needed training.

The real daemon follows a local repository holding the penguin part of the example stack (tables →
`penguin_sex` → the `penguin_api` A/B service; see `tests/e2e/tests.helpers.journeys.py` for how training is
shrunk). Forward: a commit retrains both candidates with `--size` epochs and the service moves to the
new release. Then `--reverts` times `git revert HEAD` (each revert undoes the previous one), which the
daemon applies as a restore: no training, the service's workers swap back to models already in the store.
Both directions are measured the same way: from the commit to the end of the first answer from which
every answer carries the target release's model version for its variant (responses name both), under
a bounded closed-loop load on 127.0.0.1 (light during training, `--threads` clients during reverts).
Target: revert ≤ 5 s on a local repository, with zero failed requests.
Run: python tests/bench/bench_revert.py [--size 40] [--reverts 3] [--threads 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.prefect_env import prefect_api  # noqa: E402
from tests.e2e.conftest import DaemonProcess  # noqa: E402
from tests.helpers.journeys import (  # noqa: E402
    MODEL,
    MODEL_SPEC,
    PENGUIN_ONLY,
    SERVICE,
    SHRUNK_EPOCHS,
    LoadLoop,
    free_service_port,
    make_stack_repo,
    model_spec,
    release,
    routing_of,
    switch_time,
    training_logs,
)


def _action_seconds(daemon: DaemonProcess, revision: str, resource: str) -> float:
    return sum(e.get("duration_s", 0.0) for e in daemon.journal()
               if e["type"] == "ActionSucceeded" and e.get("revision") == revision and e["resource"] == resource)


def _planned_after(daemon: DaemonProcess, revision: str, committed_at: float) -> float:
    """Seconds from the commit (wall clock) to the daemon's ApplyStarted for it: notice, compose, observe, plan."""
    started = [e["ts"] for e in daemon.journal() if e["type"] == "ApplyStarted" and e.get("revision") == revision]
    return min(started) - committed_at if started else float("nan")


def _move(daemon: DaemonProcess, load: LoadLoop, commit, target_of, timeout: float) -> tuple[float, str, float]:
    """Commit (via `commit()`), wait for convergence and for traffic on the target release; returns
    (seconds from the commit to 100 % traffic on it, the new revision, seconds until the apply started)."""
    load.wait_for(lambda r: r.status == 200, 30, "answers before the commit")
    started, wall = time.monotonic(), time.time()
    sha = commit()
    daemon.wait_converged(sha, timeout=timeout)
    target = routing_of(target_of())
    load.wait_for(lambda r: r.started > started and target.get(r.variant or "") == r.version, 30, "traffic on the target release")
    time.sleep(0.3)  # answers after the switch, so a flap back would show
    load.stop()
    switched, _, _ = switch_time(load.snapshot(), target, started)
    return switched - started, sha, _planned_after(daemon, sha, wall)


def run(size: int, reverts: int, threads: int, prefect_api: str, workdir: Path) -> dict[str, float]:
    repo = make_stack_repo(workdir / "repo", tables=PENGUIN_ONLY, dashboards=False)
    home = workdir / "home"
    base, port = free_service_port()
    daemon = DaemonProcess(repo.path, home, prefect_api, {"SPECD_SERVICE_PORT_BASE": str(base)})
    daemon.extra_env["SPECD_METRICS_PORT"] = str(daemon.port)
    daemon.start()
    try:
        daemon.wait_converged(repo.head(), timeout=300)
        before = release(home)

        def forward_commit() -> str:
            repo.write(MODEL_SPEC, model_spec(size))
            return repo.commit(f"penguin_sex: train {size} epochs")

        with LoadLoop(port, threads=1, pause_s=0.05, max_s=900, max_requests=50_000) as probe:  # light: training owns the CPU
            forward_s, forward, _ = _move(daemon, probe, forward_commit, lambda: release(home), timeout=900)
        failed = len(probe.failures())
        after = release(home)
        logs = training_logs(home)

        revert_times, planned, swaps, requests = [], [], [], 0
        for i in range(reverts):
            target = before if i % 2 == 0 else after
            with LoadLoop(port, threads=threads, max_s=120, max_requests=100_000) as load:
                seconds, sha, plan_s = _move(daemon, load, lambda: (repo.git("revert", "--no-edit", "HEAD"), repo.head())[1],
                                   lambda: release(home), timeout=120)
            assert release(home).fingerprint == target.fingerprint, "the revert did not restore the earlier release"
            revert_times.append(seconds)
            planned.append(plan_s)
            swaps.append(_action_seconds(daemon, sha, f"service/{SERVICE}") + _action_seconds(daemon, sha, f"model/{MODEL}"))
            requests += len(load.snapshot())
            failed += len(load.failures())
        retrained = sum(1 for name, mtime in training_logs(home).items() if logs.get(name) != mtime)
        figures = {"forward_s": forward_s, "forward_model_s": _action_seconds(daemon, forward, f"model/{MODEL}"),
                   "revert_planned_s": statistics.median(planned), "revert_actions_s": statistics.median(swaps),
                   "revert_s": statistics.median(revert_times), "revert_max_s": max(revert_times), "reverts": len(revert_times),
                   "requests": requests, "failed": failed, "retrained": retrained,
                   "champion_changed": float(after.champion != before.champion)}
    finally:
        daemon.stop()
        from daemon.adapters.services.supervisor import Supervisor

        Supervisor(home).stop_all()  # only if the daemon died before stopping its services
    return figures


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=40, help=f"epochs of the forward training (the stack starts at {SHRUNK_EPOCHS})")
    parser.add_argument("--reverts", type=int, default=3, help="git reverts measured (each undoes the previous one)")
    parser.add_argument("--threads", type=int, default=3, help="load clients during the reverts")
    args = parser.parse_args(argv)
    if args.size == SHRUNK_EPOCHS:
        parser.error(f"--size must differ from the starting {SHRUNK_EPOCHS} epochs, or nothing is retrained")
    with prefect_api() as api, tempfile.TemporaryDirectory(prefix="bench-revert-") as tmp:
        f = run(args.size, args.reverts, args.threads, api, Path(tmp))
    champion = "new champion promoted" if f["champion_changed"] else "champion kept, challenger retrained"
    print(f"forward change (retrain 2 candidates, {args.size} epochs; {champion}):")
    print(f"  commit → 100 % traffic on the new release       {f['forward_s']:7.2f} s   (model action {f['forward_model_s']:.1f} s)")
    print(f"git revert (restore, no training), {f['reverts']:.0f} revert(s) under {args.threads} clients:")
    print(f"  commit → 100 % traffic on the restored release  {f['revert_s']:7.2f} s   median, max {f['revert_max_s']:.2f} s (target ≤ 5 s)")
    print(f"    of which: commit → apply started {f['revert_planned_s']:.2f} s (notice, compose, observe, plan), "
          f"model restore + service swap actions {f['revert_actions_s']:.2f} s")
    print(f"  ratio forward/revert = {f['forward_s'] / f['revert_s']:.1f}x")
    print(f"  requests {f['requests']:.0f}, failed {f['failed']:.0f}; training or evaluation runs started by the reverts: {f['retrained']:.0f}")
    return f


if __name__ == "__main__":
    main()
