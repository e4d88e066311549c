"""Benchmark: what Prefect costs a reconcile cycle, the first cycle, and an idle minute (issue 14 item 2).

The real daemon (`specd run` in its own process) follows a local repository of one 100-row table, once
with Prefect (its own embedded `prefect server start`, as a user runs it) and once with `--no-prefect`
(the baseline, same run, same machine). Per mode:
- first cycle: from the daemon's `DaemonStarted` journal event (written once the Prefect server is
  healthy) to the first revision converged, minus the table's build time (target: ≤ 3 s with Prefect);
- commit → converged, minus the build time, over --commits commits (target ≤ 1 s with Prefect), and
  the Prefect overhead per cycle: that figure with Prefect − without (target ≤ 0.3 s);
- idle: CPU seconds per minute of the whole process tree (the daemon and every descendant: the Prefect
  server, its workers) once converged, read with psutil (target ≤ 1 s per minute).
Every figure is min/median/max over the runs (--starts daemon starts for the first cycle, --commits per
start for the commits). `--external` uses the Prefect API that PREFECT_API_URL names instead of an
embedded server (the CI wrapper does: one session server), so the idle tree then excludes the server.
Run: python tests/bench/bench_prefect_cycle.py [--starts 3] [--commits 5] [--idle-s 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_daemon import TABLE, git, make_repo, status  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def spread(samples: list[float], unit: str = "s") -> str:
    return f"median {statistics.median(samples):6.2f} {unit} (min {min(samples):.2f}, max {max(samples):.2f})"


def wait_converged(port: int, sha: str, proc, timeout: float = 300) -> float:
    """time.time() when the daemon's /status first says `sha` is applied and in sync."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode} before converging")
        s = status(port)
        if s and s.get("revision") == sha and s.get("in_sync"):
            return time.time()
        time.sleep(0.01)
    raise TimeoutError(f"no convergence on {sha[:12]}")


def journal_ts(home: Path, event_type: str) -> float:
    for line in (home / "events.jsonl").read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("type") == event_type:
            return float(event["ts"])
    raise LookupError(event_type)


def build_seconds(home: Path, sha: str) -> float:
    """The table build's own duration at `sha` (from the journal): what every mode has to spend."""
    for line in (home / "events.jsonl").read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("type") == "ActionSucceeded" and event.get("revision") == sha and event.get("resource") == "table/orders":
            return float(event.get("duration_s", 0.0))
    return 0.0


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants alive now."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            continue
    return total


def start(repo: Path, home: Path, port: int, prefect: bool, external: bool):
    import subprocess

    env = {**os.environ, "SPECD_HOME": str(home), "BENTOML_HOME": str(home / "bentoml")}
    if not external:
        env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "daemon.cli", "run", "--repo", str(repo), "--branch", "main", "--home", str(home),
           "--metrics-port", str(port), "-o", "env.daemon.poll_interval_s=30"]
    if prefect and not external:
        cmd += ["-o", f"env.prefect.port={free_port()}"]
    if not prefect:
        cmd.append("--no-prefect")
    log = open(home.parent / f"daemon-{port}.log", "wb")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def one_start(repo: Path, home: Path, prefect: bool, external: bool, commits: int, idle_s: float) -> dict[str, list[float]]:
    home.mkdir(parents=True)
    port = free_port()
    proc = start(repo, home, port, prefect, external)
    out: dict[str, list[float]] = {"first": [], "commit": [], "idle": []}
    try:
        head = git(repo, "rev-parse", "HEAD")
        converged = wait_converged(port, head, proc)
        out["first"].append(converged - journal_ts(home, "DaemonStarted") - build_seconds(home, head))
        for n in range(commits):
            (repo / "specs" / "tables" / "orders.yaml").write_text(TABLE.format(n=f"{time.time_ns()}-{n}"))
            git(repo, "commit", "-q", "-am", f"change {n}")
            committed = time.time()
            sha = git(repo, "rev-parse", "HEAD")
            out["commit"].append(wait_converged(port, sha, proc) - committed - build_seconds(home, sha))
        if idle_s > 0:
            time.sleep(3.0)  # the last cycle's Prefect events flushed (event persister, task run recorder)
            before, started = tree_cpu(proc.pid), time.monotonic()
            time.sleep(idle_s)
            out["idle"].append((tree_cpu(proc.pid) - before) / (time.monotonic() - started) * 60)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=3, help="daemon starts per mode")
    parser.add_argument("--commits", type=int, default=5, help="commits per start")
    parser.add_argument("--idle-s", type=float, default=60.0, help="idle seconds measured per start")
    parser.add_argument("--external", action="store_true", help="use PREFECT_API_URL's server instead of an embedded one")
    args = parser.parse_args(argv)
    if args.external and not os.environ.get("PREFECT_API_URL"):
        parser.error("--external needs PREFECT_API_URL")
    results: dict[bool, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for prefect in (False, True):
            merged: dict[str, list[float]] = {"first": [], "commit": [], "idle": []}
            for i in range(args.starts):
                repo = make_repo(Path(tmp) / f"repo-{prefect}-{i}")
                got = one_start(repo, Path(tmp) / f"home-{prefect}-{i}", prefect, args.external, args.commits, args.idle_s)
                for key, values in got.items():
                    merged[key].extend(values)
            results[prefect] = merged
    without, with_ = results[False], results[True]
    server = "external Prefect server (not in the tree)" if args.external else "embedded Prefect server"
    print(f"bench_prefect_cycle: {args.starts} daemon start(s) per mode, {args.commits} commit(s) each, {server}")
    print(f"  first cycle beyond start, no Prefect:     {spread(without['first'])}")
    print(f"  first cycle beyond start, Prefect:        {spread(with_['first'])}   (target ≤ 3 s)")
    figures = {"first_s": statistics.median(with_["first"]), "first_noprefect_s": statistics.median(without["first"])}
    if args.commits:
        overhead = statistics.median(with_["commit"]) - statistics.median(without["commit"])
        print(f"  commit → converged − build, no Prefect:   {spread(without['commit'])}")
        print(f"  commit → converged − build, Prefect:      {spread(with_['commit'])}   (target ≤ 1 s)")
        print(f"  Prefect overhead per cycle (median with − without) = {overhead:.2f} s (target ≤ 0.3 s); "
              f"ratio with/without = {statistics.median(with_['commit']) / max(1e-3, statistics.median(without['commit'])):.1f}x")
        figures.update(commit_s=statistics.median(with_["commit"]), commit_noprefect_s=statistics.median(without["commit"]), overhead_s=overhead)
    if args.idle_s > 0:
        print(f"  idle CPU of the process tree, no Prefect: {spread(without['idle'], 's/min')}")
        print(f"  idle CPU of the process tree, Prefect:    {spread(with_['idle'], 's/min')}   (target ≤ 1 s per minute)")
        figures.update(idle_cpu_per_min=statistics.median(with_["idle"]), idle_cpu_per_min_noprefect=statistics.median(without["idle"]))
    return figures


if __name__ == "__main__":
    main()
