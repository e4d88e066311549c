"""Benchmark: the example tables built on S3 (moto_server on 127.0.0.1) against the same build on local disk.

    python tests/bench/bench_s3.py [--runs 3] [--tables bronze_orders,silver_orders]

Each run is a real `specd apply --no-prefect` of the repository's example tables (specs/tables, their
presets and data; the online block left out: it prices Redis, not storage) into a fresh state home, once
with `storage.root` on local disk (the baseline) and once on `s3://` (moto, a test double: a real store
adds network latency moto does not have, and moto adds Python request handling a real store does not).
Then `specd plan` over the built tables (observe reads every Delta log: on S3 one listing and one GET
per commit file per table). Printed, min/median/max over the runs:

- `apply local|s3` and `plan local|s3`: wall seconds of the command;
- `builds local|s3`: the sum of the table build actions' own seconds (from the apply output);
- `cpu local|s3`: CPU seconds of the apply (the specd process and its build workers; on S3 plus the
  CPU moto_server spent serving it, also shown alone as `cpu moto_server`: the double's Python request
  handling, which a real store does not charge to this machine) — the load-independent figure here;
- `ratio s3/local apply|builds|cpu|plan = ...`: medians (target ≤ 1.5 for the builds).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers.s3 import KEY_ID, KEY_ID_SECRET, SECRET_KEY, SECRET_KEY_SECRET, start_moto, stop_moto  # noqa: E402

ACTION = re.compile(r"\] create table/\S+: ok \(([0-9.]+)s\)")


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.invalid", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.invalid"}
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)


def make_repo(path: Path, tables: list[str] | None) -> Path:
    import yaml

    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    shutil.copytree(ROOT / "environments", path / "environments")
    for part in ("presets", "data"):
        shutil.copytree(ROOT / "specs" / part, path / "specs" / part)
    (path / "specs" / "tables").mkdir()
    for spec in sorted((ROOT / "specs" / "tables").glob("*.yaml")):
        if tables and spec.stem not in tables:
            continue
        data = yaml.safe_load(spec.read_text())
        data.pop("online", None)
        (path / "specs" / "tables" / spec.name).write_text(yaml.safe_dump(data, sort_keys=False))
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "example tables")
    return path


def overlay(repo: Path, root: str | None, endpoint: str | None) -> None:
    """environments/bench.yaml: dev with the storage root (None: the default, local under the home)."""
    text = "defaults:\n  - base\n  - _self_\nname: bench\n"
    if root:
        text += (f"storage:\n  root: {root}\n  storage_options:\n    AWS_ENDPOINT_URL: \"{endpoint}\"\n    AWS_ALLOW_HTTP: \"true\"\n"
                 f"    AWS_REGION: us-east-1\n    AWS_ACCESS_KEY_ID: ${{secret:{KEY_ID_SECRET}}}\n"
                 f"    AWS_SECRET_ACCESS_KEY: ${{secret:{SECRET_KEY_SECRET}}}\n")
    (repo / "environments" / "bench.yaml").write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", f"storage {root or 'local'}")


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def specd(command: str, repo: Path, home: Path) -> tuple[float, str]:
    env = {**os.environ, KEY_ID_SECRET: KEY_ID, SECRET_KEY_SECRET: SECRET_KEY, "BENTOML_HOME": str(home / "bentoml")}
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "daemon.cli", command, "--repo", str(repo), "--home", str(home), "--env", "bench"]
    if command == "apply":
        cmd.append("--no-prefect")
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"specd {command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def stats(samples: list[float]) -> str:
    return f"min {min(samples):.2f} / median {statistics.median(samples):.2f} / max {max(samples):.2f} s"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tables", default="", help="comma-separated subset of the example tables (with their upstreams)")
    args = parser.parse_args(argv)
    tables = [t for t in args.tables.split(",") if t] or None
    samples: dict[str, list[float]] = {f"{what} {where}": [] for what in ("apply", "builds", "cpu", "plan") for where in ("local", "s3")}
    samples["cpu moto_server"] = []
    built: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        work = Path(tmp)
        proc, server = start_moto(work / "moto.log")
        try:
            repo = make_repo(work / "repo", tables)
            for run in range(args.runs):
                for where in ("local", "s3"):  # alternate, so machine load falls on both alike
                    root = None
                    if where == "s3":
                        os.environ[KEY_ID_SECRET], os.environ[SECRET_KEY_SECRET] = KEY_ID, SECRET_KEY
                        root = f"s3://{server.create_bucket()}/lake"
                    overlay(repo, root, server.endpoint)
                    home = work / f"home-{where}-{run}"
                    cpu_before, moto_before = _children_cpu(), _cpu_of(server.pid)
                    seconds, out = specd("apply", repo, home)
                    moto = _cpu_of(server.pid) - moto_before if where == "s3" else 0.0
                    samples[f"cpu {where}"].append(_children_cpu() - cpu_before + moto)
                    if where == "s3":
                        samples["cpu moto_server"].append(moto)
                    builds = [float(m) for m in ACTION.findall(out)]
                    built[where] = len(builds)
                    samples[f"apply {where}"].append(seconds)
                    samples[f"builds {where}"].append(sum(builds))
                    samples[f"plan {where}"].append(specd("plan", repo, home)[0])
                    if where == "s3":
                        assert not (home / "lake").exists(), "an S3 run wrote the lake to local disk"
        finally:
            stop_moto(proc)
    for name, values in samples.items():
        print(f"{name}: {stats(values)}")
    ratios = {}
    for what in ("apply", "builds", "cpu", "plan"):
        ratios[what] = statistics.median(samples[f"{what} s3"]) / statistics.median(samples[f"{what} local"])
        print(f"ratio s3/local {what} = {ratios[what]:.2f}")
    return {"samples": samples, "ratios": ratios, "built": built}


if __name__ == "__main__":
    main()
