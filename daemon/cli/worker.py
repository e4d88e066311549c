"""`specd worker --pool P`: a thin wrapper around `prefect worker start --pool P --type process`.

Why a wrapper at all: a worker on a GPU server needs three things the plain command does not set up —
specd's code importable (the deployment's entrypoint `flows.training.pool.train_candidate`), a
working directory of its own (`--workdir`: checkouts of the applied shas and run logs), and a
`--limit` equal to the GPUs the server offers (default: the GPUs `nvidia-smi`/CUDA_VISIBLE_DEVICES
show, else 1). It then *becomes* the Prefect worker (exec), so signals and exit codes are Prefect's.
The plain equivalent is printed with `--print`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from typing import Any

CODE_ROOT = Path(__file__).resolve().parents[2]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "worker", help="run a Prefect process worker for training.work_pool / tables.work_pool on this server (prefect worker start)",
        description="Examples:\n  PREFECT_API_URL=http://daemon-host:4200/api specd worker --pool gpus --limit 4 --workdir /srv/specd\n"
                    "  specd worker --pool gpus --queue a100 --print",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", required=True, help="the work pool (the environment's training.work_pool or tables.work_pool)")
    parser.add_argument("--limit", type=int, default=None, help="runs at once on this server (default: its GPUs, else 1)")
    parser.add_argument("--workdir", default=None, help="this worker's own directory for checkouts and run logs (default: ~/.specd-worker)")
    parser.add_argument("--queue", action="append", default=[], help="work queue(s) to take runs from (one per GPU class; default: all)")
    parser.add_argument("--name", default=None, help="the worker's name in Prefect and in specd status (default: hostname)")
    parser.add_argument("--print", dest="print_only", action="store_true", help="print the prefect command and environment instead of running it")
    parser.set_defaults(handler=run, override=[])
    return parser


def default_limit(environ: dict[str, str] | None = None) -> int:
    from flows.training.launch import visible_gpus

    return max(1, len(visible_gpus(environ)))


def command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    limit = args.limit if args.limit is not None else default_limit()
    if limit < 1:
        raise ValueError("--limit must be at least 1")
    workdir = Path(args.workdir or Path.home() / ".specd-worker").resolve()
    name = args.name or socket.gethostname()
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", args.pool, "--type", "process",
            "--limit", str(limit), "--name", name, "--install-policy", "never"]
    for queue in args.queue:
        argv += ["--work-queue", queue]
    env = {"PYTHONPATH": os.pathsep.join([str(CODE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "SPECD_WORKER_DIR": str(workdir), "SPECD_WORKER_NAME": name}
    return argv, env


def run(args: argparse.Namespace) -> int:
    try:
        argv, env = command(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.print_only:
        print(" ".join(f"{k}={v}" for k, v in env.items()), " ".join(argv[1:]).replace("-m prefect", "prefect", 1))
        return 0
    if not os.environ.get("PREFECT_API_URL"):
        print("error: set PREFECT_API_URL to the daemon's Prefect API (e.g. http://daemon-host:4200/api)", file=sys.stderr)
        return 1
    Path(env["SPECD_WORKER_DIR"]).mkdir(parents=True, exist_ok=True)
    os.execve(argv[0], argv, {**os.environ, **env})
    return 0  # not reached
