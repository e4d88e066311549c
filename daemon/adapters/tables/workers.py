"""Build worker processes for tables: started with `spawn`, reused, watched, and given back when idle.

A build imports pyarrow, DuckDB, deltalake (and whatever those pull in) — about a second per fresh
process, far more than a small table's build. Workers are therefore kept warm in a
ProcessPoolExecutor using the `spawn` start method (deltalake panics in forked children). A crash or
panic breaks only the pool: the action fails as transient, the pool is rebuilt and the retry runs in a
fresh worker. Each worker exits on its own when the daemon dies (it watches its parent), and the
pool shuts down after `IDLE_S` without builds so an idle daemon stays small.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

IDLE_S = float(os.environ.get("SPECD_TABLE_WORKER_IDLE_S", "120"))
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_in_flight = 0
_last_used = 0.0
_reaper: threading.Thread | None = None


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)  # the daemon is gone: a half-done build is discarded (nothing was committed)
            time.sleep(0.5)

    threading.Thread(target=watch, name="specd-parent-watch", daemon=True).start()


def _get_pool(max_workers: int) -> ProcessPoolExecutor:
    global _pool, _reaper
    if _pool is None:
        _pool = ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_watch_parent,
            initargs=(os.getpid(),),
            max_tasks_per_child=50,  # bound any slow growth of a long-lived worker
        )
        if _reaper is None or not _reaper.is_alive():
            _reaper = threading.Thread(target=_reap_idle, name="specd-table-workers-reaper", daemon=True)
            _reaper.start()
    return _pool


def _reap_idle() -> None:
    while True:
        time.sleep(min(IDLE_S, 5.0))
        with _lock:
            if _pool is not None and _in_flight == 0 and time.monotonic() - _last_used > IDLE_S:
                _shutdown_locked()


def run(job: dict[str, Any], max_workers: int) -> dict[str, Any]:
    """Run one build job in a worker; a crashed worker becomes a transient failure payload."""
    global _in_flight, _last_used
    from flows.tables.build import run_job

    with _lock:
        pool = _get_pool(max_workers)
        _in_flight += 1
    try:
        return pool.submit(run_job, job).result()
    except BrokenProcessPool as exc:
        with _lock:
            if _pool is pool:
                _shutdown_locked()
        return {"ok": False, "transient": True, "reason": "BuildCrashed", "error": f"table {job['name']}: build worker died ({exc})"}
    finally:
        with _lock:
            _in_flight -= 1
            _last_used = time.monotonic()


def _shutdown_locked() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def shutdown() -> None:
    """Stop the workers (the daemon calls this on exit; running builds are abandoned, never half-committed)."""
    with _lock:
        # ProcessPoolExecutor.shutdown() sets `_processes` to None: take the workers before it
        processes = list((getattr(_pool, "_processes", None) or {}).values())
        _shutdown_locked()
    for process in processes:
        if process.is_alive():
            process.terminate()
