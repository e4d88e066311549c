"""Child processes the daemon owns: start them in their own group, find them again, stop them fully.

After a `kill -9` of the daemon its children live on. A pid file records pid + the process start time
(psutil), so a restarted daemon adopts its own child instead of starting a second one, and never
mistakes a recycled pid for it. Stopping sends SIGINT, then SIGTERM, then SIGKILL to the whole group
(a Prefect worker ignores the first SIGTERM for many seconds, per DESIGN.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from daemon.shared.fsio import atomic_write_json, read_json

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (psutil; the unit pid files have always recorded, so records
    written before stay valid); None if gone, a zombie or not ours to see."""
    import psutil  # here: `specd plan` reads pid files but needs no process table (~8 ms)

    if pid <= 0:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return round((process.create_time() - psutil.boot_time()) * _CLOCK_TICKS)
    except (psutil.Error, OSError):
        return None


def processes_with_env(key: str, value: str) -> list[int]:
    """Live processes (not this one) whose environment has `key=value`: children that left our group."""
    import psutil  # here: `specd plan` reads pid files but needs no process table (~8 ms)

    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(key) == value and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (psutil.Error, OSError):
            continue
    return found


def alive(pid: int, start_time: int | None = None) -> bool:
    current = process_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_time: int
    meta: dict

    @classmethod
    def read(cls, path: Path) -> PidRecord | None:
        data = read_json(path)
        try:
            return cls(int(data["pid"]), int(data["start_time"]), dict(data.get("meta", {}))) if data else None
        except (ValueError, KeyError, TypeError):
            return None

    def write(self, path: Path) -> None:
        atomic_write_json(path, {"pid": self.pid, "start_time": self.start_time, "meta": self.meta}, mode=0o644)

    def alive(self) -> bool:
        return alive(self.pid, self.start_time)


def spawn(cmd: list[str], *, log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start a long-lived child in its own session (its own process group), output to a log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # handed to the child, closed below
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
    finally:
        log.close()


def record_for(proc: subprocess.Popen, meta: dict | None = None) -> PidRecord:
    for _ in range(50):
        start = process_start_time(proc.pid)
        if start is not None:
            return PidRecord(proc.pid, start, meta or {})
        time.sleep(0.01)
    raise RuntimeError(f"process {proc.pid} vanished right after start")


def stop_group(pid: int, start_time: int | None = None, *, grace_s: float = 10.0) -> bool:
    """SIGINT → SIGTERM → SIGKILL to the process group led by `pid`. True if it was running."""
    if not alive(pid, start_time):
        return False
    for sig, wait in ((signal.SIGINT, grace_s / 2), (signal.SIGTERM, grace_s / 2), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not alive(pid, start_time):
                return True
            time.sleep(0.05)
    return True


def stop_child_group(process: subprocess.Popen, *, grace_s: float = 10.0) -> None:
    """Stop a child started in its own session (start_new_session=True) with everything it started:
    SIGTERM to its process group, SIGKILL after `grace_s`, then reap it."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# -- short-lived workers (builds, training) that must not outlive a stopping daemon -----------------
class ChildRegistry:
    """Worker subprocesses of one engine (the training launcher keeps its own). Every registry is
    reachable through `terminate_tracked`, so a graceful daemon stop leaves no orphans without the
    daemon knowing which engine started what."""

    def __init__(self, name: str):
        self.name = name
        self._children: dict[int, subprocess.Popen] = {}
        _registries.append(self)

    def track(self, proc: subprocess.Popen) -> subprocess.Popen:
        self._children[proc.pid] = proc
        return proc

    def untrack(self, proc: subprocess.Popen) -> None:
        self._children.pop(proc.pid, None)

    def terminate(self, grace_s: float = 5.0) -> int:
        """Stop every tracked worker that is still running (its group when it leads one)."""
        stopped = 0
        for pid, proc in list(self._children.items()):
            if proc.poll() is None:
                try:
                    os.killpg(pid, signal.SIGTERM) if os.getpgid(pid) == pid else proc.terminate()
                except ProcessLookupError:
                    continue
                try:
                    proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                stopped += 1
            self._children.pop(pid, None)
        return stopped


_registries: list[ChildRegistry] = []
_default = ChildRegistry("daemon")


def track(proc: subprocess.Popen) -> subprocess.Popen:
    """Register a worker subprocess in the daemon's own registry."""
    return _default.track(proc)


def untrack(proc: subprocess.Popen) -> None:
    _default.untrack(proc)


def terminate_tracked(grace_s: float = 5.0) -> int:
    """Stop the tracked workers of every registry; return how many were stopped."""
    return sum(registry.terminate(grace_s) for registry in list(_registries))
