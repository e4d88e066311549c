"""Multi-node DDP: one `torchrun` per node, joined by a c10d rendezvous hosted on node 0.

Why a module of its own: a candidate with `num_nodes: N` is N cooperating processes on N machines, and
what each machine runs must be decidable per node, by whoever dispatches to that machine (the daemon on
loopback today, a Prefect work-pool worker per GPU server): `node_command(job, job_path, node)` is that
per-node command, a pure function. Multi-node hangs are the common failure of DDP (a node that never
arrives, a firewalled backend port, a peer that died mid-step), so every wait is bounded by the spec's
`training.ddp_timeout_s`:

- the rendezvous: `--rdzv_conf=join_timeout=T` (torchrun's default is 600 s), hosted by node 0
  (`is_host=true` there, so the store lives on rank 0's worker whatever the hostnames resolve to);
- the pre-flight (`preflight`, run by `flows.training.run` in every rank before Lightning): the process
  group is created with timeout T and one all-reduce must return the world size, so a broken backend
  fails in seconds with a message naming the ranks, instead of hanging inside Lightning's first step;
  Lightning then reuses that process group, so every later collective has the same timeout;
- a peer that dies mid-run makes the survivors' collectives fail (connection reset, or T at most);
  `--max_restarts=0`: a failed node fails the candidate, the caller (daemon or pool) decides on retries.

The rank that writes the model and the result is node 0's local rank 0 (SPECD_NODE_RANK=0,
LOCAL_RANK=0), not c10d's global rank 0, which the rendezvous assigns by host name and pid: so the
result lands on the machine that dispatched node 0. All ranks hold identical parameters under DDP;
`parameter_digest` lets the writer check that before saving.

`run_local(job, job_path, nnodes)` runs all nodes on 127.0.0.1 (`python -m flows.training.multinode
job.json`), which is what the daemon launches for `num_nodes > 1` when no rendezvous endpoint is set.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.shared import procs

DEFAULT_TIMEOUT_S = 300.0
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Node:
    """One node of a multi-node candidate: where it stands and where it meets the others."""

    node_rank: int
    nnodes: int
    rdzv_endpoint: str  # host:port on node 0's machine (node 0 hosts the c10d store there)
    rdzv_id: str  # the same on every node of one run (e.g. the candidate tag)
    nproc_per_node: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} is not in 0..{self.nnodes - 1}")
        host, _, port = self.rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"rendezvous endpoint {self.rdzv_endpoint!r} is not host:port")
        if self.nproc_per_node < 1 or self.timeout_s <= 0:
            raise ValueError("nproc_per_node must be ≥ 1 and timeout_s > 0")


def job_timeout(job: Mapping[str, Any]) -> float:
    return float(job.get("resources", {}).get("ddp_timeout_s") or DEFAULT_TIMEOUT_S)


def rdzv_id_for(job: Mapping[str, Any]) -> str:
    return str(job.get("tag", job.get("candidate", "specd"))).replace(":", "-")


def node_command(job_path: Path | str, node: Node, python: str = sys.executable) -> list[str]:
    """The command line node `node.node_rank` runs: torchrun with `--nnodes`, `--node_rank`, a c10d
    rendezvous bounded by the timeout and hosted by node 0, no restarts, then the training entry point."""
    timeout = max(1, round(node.timeout_s))
    host = "true" if node.node_rank == 0 else "false"
    return [python, "-m", "torch.distributed.run", f"--nnodes={node.nnodes}", f"--nproc_per_node={node.nproc_per_node}",
            f"--node_rank={node.node_rank}", "--rdzv_backend=c10d", f"--rdzv_endpoint={node.rdzv_endpoint}",
            f"--rdzv_id={node.rdzv_id}", f"--rdzv_conf=join_timeout={timeout},read_timeout={timeout},is_host={host}",
            "--max_restarts=0", "--monitor_interval=0.5", "-m", "flows.training.run", str(job_path)]


def node_environment(node: Node, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the node's processes need besides the command: which node they are (the writer is node 0) and
    the collective timeout for the pre-flight."""
    env = dict(os.environ if base is None else base)
    env.update({"SPECD_NODE_RANK": str(node.node_rank), "SPECD_DDP_TIMEOUT_S": str(node.timeout_s)})
    return env


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def is_writer(global_zero: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this rank saves the model and writes the result: node 0's first process when nodes were
    launched by `node_command`, else Lightning's global rank 0."""
    environ = os.environ if environ is None else environ
    if environ.get("SPECD_NODE_RANK") is None:
        return global_zero
    return environ["SPECD_NODE_RANK"] == "0" and environ.get("LOCAL_RANK", "0") == "0"


def distributed_launch(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is one rank of several started by torchrun."""
    environ = os.environ if environ is None else environ
    return int(environ.get("WORLD_SIZE", "1")) > 1 and "TORCHELASTIC_RUN_ID" in environ


def preflight(timeout_s: float, accelerator: str = "cpu") -> int:
    """Create the process group (timeout `timeout_s`) and all-reduce a one from every rank; returns the
    world size. Raises RuntimeError naming this rank when a peer does not answer in time."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = timedelta(seconds=timeout_s)
    try:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if gpu else "gloo", timeout=timeout)
        probe = torch.ones(1, device="cuda" if gpu else "cpu")
        work = dist.all_reduce(probe, async_op=True)
        if not work.wait(timeout=timeout):
            raise TimeoutError("the all-reduce did not complete")
    except Exception as exc:
        raise RuntimeError(f"DDP pre-flight failed on rank {rank} of {world} within {timeout_s:g} s "
                           f"(training.ddp_timeout_s): {type(exc).__name__}: {exc}") from exc
    if int(probe.item()) != world:
        raise RuntimeError(f"DDP pre-flight on rank {rank}: all-reduce gave {int(probe.item())}, expected world size {world}")
    print(f"specd: DDP pre-flight ok on rank {rank} of {world} (node {os.environ.get('SPECD_NODE_RANK', '?')})",
          file=sys.stderr, flush=True)
    return world


def parameter_digest(state_dict: Mapping[str, Any]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes: equal on all ranks iff the weights are."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype, bfloat16 included
    return digest.hexdigest()


def gather_digests(digest: str) -> list[str]:
    """Every rank's digest, in global rank order (all ranks must call it); [digest] when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [digest]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, digest)
    return [str(d) for d in out]


def start_node(job_path: Path | str, node: Node, log_path: Path, *, env: Mapping[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.Popen:
    """Start one node (its own session, so it and its ranks stop as a unit); the caller waits and stops it."""
    from flows.training.launch import CODE_ROOT

    environment = node_environment(node, env)
    environment["PYTHONPATH"] = os.pathsep.join([str(CODE_ROOT), *filter(None, [environment.get("PYTHONPATH")])])
    with log_path.open("w", encoding="utf-8") as handle:
        return subprocess.Popen(node_command(job_path, node), cwd=cwd or CODE_ROOT, env=environment, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)


def run_local(job: Mapping[str, Any], job_path: Path, nnodes: int, *, log_dir: Path | None = None,
              env: Mapping[str, str] | None = None, nproc_per_node: int | None = None,
              deadline_s: float | None = None) -> list[int]:
    """Run all `nnodes` nodes on 127.0.0.1 and wait for them; returns their exit codes by node rank.

    When one node fails the others get the timeout to notice (their collectives fail), then are stopped;
    `deadline_s` bounds the whole run (None: unbounded, training takes what it takes)."""
    resources = job.get("resources", {})
    nproc = nproc_per_node or max(1, int(resources.get("devices", 1)) if str(resources.get("devices", 1)).isdigit() else 1)
    endpoint = f"{LOOPBACK}:{free_port()}"
    log_dir = log_dir or job_path.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    timeout = job_timeout(job)
    nodes = [Node(rank, nnodes, endpoint, rdzv_id_for(job), nproc, timeout) for rank in range(nnodes)]
    processes = [start_node(job_path, node, log_dir / f"{job_path.stem}.node{node.node_rank}.log", env=env) for node in nodes]
    started, failed_at = time.monotonic(), None
    try:
        while any(p.poll() is None for p in processes):
            now = time.monotonic()
            if failed_at is None and any(p.returncode not in (None, 0) for p in processes):
                failed_at = now
            if (failed_at is not None and now - failed_at > timeout + 10) or (deadline_s and now - started > deadline_s):
                break
            time.sleep(0.1)
    finally:
        for process in processes:
            procs.stop_child_group(process)
    return [int(p.returncode) for p in processes]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m flows.training.multinode job.json [NNODES]`: all nodes of one candidate on loopback; the
    node logs are printed after the run, node 0 first; exits non-zero when any node failed."""
    import json

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2):
        print("usage: python -m flows.training.multinode <job.json> [nnodes]", file=sys.stderr)
        return 2
    # the nodes run in sessions of their own: a SIGTERM to this process (run_jobs stopping it) must reach them
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    job_path = Path(args[0])
    job = json.loads(job_path.read_text(encoding="utf-8"))
    nnodes = int(args[1]) if len(args) == 2 else int(job.get("resources", {}).get("num_nodes", 1))
    codes = run_local(job, job_path, nnodes)
    for rank, code in enumerate(codes):
        log = job_path.parent / f"{job_path.stem}.node{rank}.log"
        print(f"--- node {rank} of {nnodes}: exit {code} ({log})", flush=True)
        try:
            sys.stdout.write(log.read_text(encoding="utf-8", errors="replace")[-20000:])
        except OSError:
            pass
    if any(codes):
        print(f"specd: multi-node training failed: node exit codes {codes}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
