"""The embedded online store: a private `redis-server` on 127.0.0.1 that the daemon starts and stops.

Used only when the environment names no store (`online_store.url` unset) and a table declares
`online:`. No persistence (`--save '' --appendonly no`): after a restart the store is empty, observe sees
no recorded version and the plan re-materialises every table, so nothing is lost that Delta does not
hold. A pid file with the process start time lets a restarted daemon adopt it (daemon.shared.procs).
With TLS files (the environment's `tls.cert`) it listens on TLS only: `--port 0 --tls-port PORT`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from daemon.shared import procs
from daemon.shared.tls import TLSFiles, redis_server_args

PID_FILE = "online-redis.json"


def pid_path(home: Path) -> Path:
    return home / "run" / PID_FILE


def installed() -> bool:
    return shutil.which("redis-server") is not None


def running(home: Path) -> procs.PidRecord | None:
    record = procs.PidRecord.read(pid_path(home))
    return record if record is not None and record.alive() else None


def ensure(home: Path, port: int, ping, timeout_s: float = 10.0, tls: TLSFiles | None = None) -> bool:
    """Start the embedded store unless it runs; True if this call started it. `ping()` → bool."""
    record = running(home)
    if record is not None:
        if record.meta.get("port") == port and bool(record.meta.get("tls")) == bool(tls) and ping():
            return False
        procs.stop_group(record.pid, record.start_time, grace_s=5.0)  # another port (or wedged): replace it
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server) and online_store.url is unset")
    data_dir = home / "online"
    data_dir.mkdir(parents=True, exist_ok=True)
    listen = redis_server_args(tls, port) if tls is not None else ["--port", str(port)]
    cmd = [binary, "--bind", "127.0.0.1", *listen, "--save", "", "--appendonly", "no",
           "--dir", str(data_dir), "--protected-mode", "yes", "--daemonize", "no"]
    proc = procs.spawn(cmd, log_path=home / "logs" / "online-redis.log")
    procs.record_for(proc, {"port": port, "cmd": "redis-server", "tls": tls is not None}).write(pid_path(home))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode} (port {port} taken?); see {home / 'logs' / 'online-redis.log'}")
        if ping():
            return True
        time.sleep(0.05)
    raise TimeoutError(f"redis-server did not answer on 127.0.0.1:{port} within {timeout_s:.0f} s")


def stop(home: Path) -> bool:
    """Stop the embedded store if this home runs one (the daemon's shutdown)."""
    record = running(home)
    if record is None:
        return False
    procs.stop_group(record.pid, record.start_time, grace_s=5.0)
    pid_path(home).unlink(missing_ok=True)
    return True
