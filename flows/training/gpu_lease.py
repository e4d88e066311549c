"""Disjoint GPU sets for the runs of one work-pool worker (`specd worker --limit N`), held by lock files.

Why not Prefect: a process worker only counts runs (`--limit`); it does not say which GPUs each may use,
so two runs on one server would both see every GPU. The lock is an exclusive `flock` on a file under the
worker's directory, which the kernel releases however the run ends (kill -9 included). Light: no
Prefect, no torch (unit-tested on its own).
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def gpu_lease(resources: dict[str, Any], root: Path, environ: dict[str, str] | None = None,
              poll_s: float = 0.5) -> Iterator[list[str] | None]:
    """A disjoint set of this server's GPUs for one run, held while it trains (None: CPU, or no GPU seen).

    Several runs on one worker (`--limit N`) must not share GPUs unknowingly: the visible GPUs are cut
    into sets of `devices` (`flows.training.launch.gpu_slots`), and a run holds one set through an
    exclusive lock file under the worker's directory (`gpu-locks/`), released by the kernel however the
    run ends (kill -9 included). A run that finds every set taken waits for one."""
    from flows.training.launch import gpu_slots, visible_gpus

    gpus = visible_gpus(environ) if resources.get("accelerator") in ("gpu", "cuda") else []
    if not gpus:
        yield None
        return
    slots = [s for s in gpu_slots(gpus, resources.get("devices", 1), len(gpus)) if s]
    locks = root / "gpu-locks"
    locks.mkdir(parents=True, exist_ok=True)
    while True:
        for index, slot in enumerate(slots):
            handle = (locks / f"slot-{index}.lock").open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            try:
                yield [str(g) for g in slot]
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(poll_s)
