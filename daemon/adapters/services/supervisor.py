"""Supervision of `bentoml serve` processes: start, readiness, restart with backoff, adoption, stop.

Why the daemon supervises instead of a process manager: the desired set of services comes from Git, and
a spec removal must stop its process. Each service gets its own session (`start_new_session`); BentoML's
process manager gives each worker a session of its own too, so a stop or a crash clean-up finds every
process of a service by the routing-file path in its environment — a worker orphaned by a SIGKILLed
arbiter would keep the listening socket and block the restart.

State lives in files under `<home>/run/services/<name>/` (see `daemon.shared.paths.runtime_dir`): `process.json`
(pid + start time from psutil, the launch settings and crash history), `routing.json` (owned by the
adapter), `workers/<pid>.json` (written by each worker), `serve.log`. A restarted daemon *adopts* a
process whose pid and start time still match the record — a recycled pid never matches — so a daemon
restart costs no service downtime. Processes survive the daemon unless `stop_all()` is called.

TLS: a launch's `tls` (the environment's `tls` section, secret references kept) makes the service
HTTPS-only — the certificate and key reach BentoML's `ssl` service config through `SPECD_TLS_*`
(bentos/bentoml_fixes.py, which also enforces `min_version`) — and the readiness probes
speak HTTPS and verify the service against the CA.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from daemon.shared import tls as tlslib
from daemon.shared.fsio import atomic_write_json, read_json
from daemon.shared.paths import bentoml_home, runtime_dir
from daemon.shared.procs import process_start_time, processes_with_env

SERVICE_TARGET = "bentos.ab_service:ABService"
CODE_ROOT = Path(__file__).resolve().parents[3]  # the checkout that holds daemon/, bentos/, flows/


@dataclass(frozen=True)
class Launch:
    """What needs a new process when it changes (everything else goes through the routing file)."""

    name: str
    host: str
    port: int
    workers: int
    target: str = SERVICE_TARGET
    env: dict[str, str] = field(default_factory=dict)
    tls: dict[str, Any] = field(default_factory=dict)  # daemon.shared.tls.settings of the environment; {}: plain HTTP

    def fingerprint(self) -> str:
        data = asdict(self)
        if not data["tls"]:
            data.pop("tls")  # records written before TLS existed keep their fingerprint (no restart)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ProcessState:
    name: str
    pid: int | None
    running: bool
    ready: bool
    launch: Launch | None
    restarts: int
    message: str


def service_processes(routing_file: Path) -> list[int]:
    """Every live process started for this service, found by the routing file in its environment.

    BentoML's process manager (circus) puts each worker in a session of its own, so the arbiter's
    process group does not reach the workers; their environment does (they inherit it).
    """
    return processes_with_env("SPECD_ROUTING_FILE", str(routing_file))


def is_ready(host: str, port: int, timeout: float = 1.0, tls: tlslib.TLSFiles | None = None) -> bool:
    """GET /readyz; over HTTPS, verified against the environment's CA, when the service serves TLS."""
    scheme = tlslib.scheme(tls)
    try:
        context = tlslib.client_context(tls) if scheme == "https" else None
        with urllib.request.urlopen(f"{scheme}://{host}:{port}/readyz", timeout=timeout, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError, ssl.SSLError):
        return False


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens on host:port (checked the way `bentoml serve` binds, with
    SO_REUSEADDR, so a port of our own just-stopped process in TIME_WAIT does not count)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False  # an unresolvable host is bentoml's error to report
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def launch_tls(launch: Launch, home: Path) -> tlslib.TLSFiles | None:
    """The launch's TLS files (secret references resolved now); None for a plain-HTTP launch."""
    files = tlslib.resolve(launch.tls, home) if launch.tls else None
    return files if files is not None and files.serving else None


class Supervisor:
    # Processes started by this daemon process (any instance), so that their exit is reaped: a zombie
    # arbiter would otherwise look alive to `kill(pid, 0)`.
    _children: dict[int, subprocess.Popen] = {}

    def __init__(self, home: Path, *, start_timeout_s: float = 60.0, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 60.0, stable_after_s: float = 60.0, stop_grace_s: float = 10.0):
        self.home = Path(home)
        self.root = runtime_dir(self.home) / "services"
        self.start_timeout_s = start_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.stop_grace_s = stop_grace_s

    # ---- paths and records ---------------------------------------------------------------------------
    def service_dir(self, name: str) -> Path:
        return self.root / name

    def routing_file(self, name: str) -> Path:
        return self.service_dir(name) / "routing.json"

    def log_file(self, name: str) -> Path:
        return self.service_dir(name) / "serve.log"

    def _record_path(self, name: str) -> Path:
        return self.service_dir(name) / "process.json"

    def read_record(self, name: str) -> dict[str, Any] | None:
        return read_json(self._record_path(name))

    def _write_record(self, name: str, record: dict[str, Any]) -> None:
        atomic_write_json(self._record_path(name), record, mode=0o644)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "process.json").is_file())

    def _alive(self, record: dict[str, Any] | None) -> bool:
        if not record or not record.get("pid"):
            return False
        self._reap(record["pid"])
        return process_start_time(record["pid"]) == record.get("start_time")

    # ---- queries ---------------------------------------------------------------------------------------
    def state(self, name: str, *, probe: bool = True) -> ProcessState:
        record = self.read_record(name)
        if record is None:
            return ProcessState(name, None, False, False, None, 0, "not started")
        launch = Launch(**record["launch"])
        running = self._alive(record)
        ready = running and probe and is_ready(launch.host, launch.port, tls=self._tls(launch))
        if running:
            message = "ready" if ready else "running, not ready"
        else:
            message = record.get("last_exit") or "not running"
        return ProcessState(name, record.get("pid"), running, ready, launch, int(record.get("restarts", 0)), message)

    # ---- actions ---------------------------------------------------------------------------------------
    def ensure(self, launch: Launch, *, wait: bool = True) -> ProcessState:
        """Make a process with exactly these launch settings run (adopt, start or replace it)."""
        record = self.read_record(launch.name)
        if record and self._alive(record) and record.get("launch_fingerprint") == launch.fingerprint():
            if not record.get("desired", True):
                record["desired"] = True
                self._write_record(launch.name, record)
        else:
            if record and self._alive(record):
                self._kill_group(record)
            if port_taken(launch.host, launch.port):
                raise RuntimeError(f"port {launch.host}:{launch.port} is already in use by another process; set `port:` "
                                   "in the service spec or `services.port_base` in the environment")
            self._start(launch, restarts=0, crashes=0)
        if wait:
            self.wait_ready(launch.name)
        return self.state(launch.name)

    def wait_ready(self, name: str, timeout_s: float | None = None) -> None:
        deadline = time.monotonic() + (timeout_s or self.start_timeout_s)
        while time.monotonic() < deadline:
            record = self.read_record(name)
            if record is None:
                raise RuntimeError(f"service {name}: no process record")
            launch = Launch(**record["launch"])
            if not self._alive(record):
                raise RuntimeError(f"service {name}: `bentoml serve` exited during start-up\n{self.log_tail(name)}")
            if is_ready(launch.host, launch.port, timeout=0.5, tls=self._tls(launch)):
                return
            time.sleep(0.2)
        raise TimeoutError(f"service {name}: not ready after {timeout_s or self.start_timeout_s:.0f}s\n{self.log_tail(name)}")

    def stop(self, name: str) -> bool:
        """Stop the whole process group and forget the service. True when something was running."""
        record = self.read_record(name)
        if record is None:
            return False
        record["desired"] = False
        self._write_record(name, record)  # a crash-restart racing with this stop must not revive it
        was_running = self._kill_group(record)
        self._record_path(name).unlink(missing_ok=True)
        return was_running

    def stop_all(self) -> list[str]:
        stopped = []
        for name in self.names():
            if self.stop(name):
                stopped.append(name)
        return stopped

    def tick(self) -> list[str]:
        """Restart crashed services whose backoff has elapsed; cheap, never blocks on readiness."""
        restarted = []
        now = time.time()
        for name in self.names():
            record = self.read_record(name)
            if not record or not record.get("desired", True):
                continue
            if self._alive(record):
                if record.get("crashes") and now - record.get("started_at", now) > self.stable_after_s:
                    record["crashes"] = 0
                    self._write_record(name, record)
                continue
            if not record.get("crashed_at"):
                self._kill_group(record)  # workers orphaned by a killed arbiter hold the port
                record["crashed_at"] = now
                record["crashes"] = int(record.get("crashes", 0)) + 1
                record["last_exit"] = f"exited (crash {record['crashes']}), restarting with backoff"
                self._write_record(name, record)
            backoff = min(self.backoff_max_s, self.backoff_base_s * 2 ** (int(record["crashes"]) - 1))
            if now - record["crashed_at"] >= backoff:
                self._start(Launch(**record["launch"]), restarts=int(record.get("restarts", 0)) + 1,
                            crashes=int(record["crashes"]))
                restarted.append(name)
        return restarted

    # ---- internals ---------------------------------------------------------------------------------------
    def _tls(self, launch: Launch) -> tlslib.TLSFiles | None:
        try:
            return launch_tls(launch, self.home)
        except (OSError, KeyError, ValueError):  # material gone: the probe fails closed (not ready)
            return tlslib.TLSFiles(cert="-", key="-", ca="/nonexistent")

    def _start(self, launch: Launch, *, restarts: int, crashes: int) -> None:
        directory = self.service_dir(launch.name)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in (directory / "workers").glob("*.json"):
            stale.unlink(missing_ok=True)
        env = {
            **os.environ,
            "BENTOML_HOME": str(bentoml_home(self.home)),
            "SPECD_HOME": str(self.home),
            "SPECD_ROUTING_FILE": str(self.routing_file(launch.name)),
            "SPECD_SERVICE_WORKERS": str(launch.workers),
            "BENTOML_DO_NOT_TRACK": "True",
            "PYTHONPATH": os.pathsep.join(p for p in (str(CODE_ROOT), os.environ.get("PYTHONPATH", "")) if p),
            **launch.env,
        }
        try:
            files = launch_tls(launch, self.home)
        except (OSError, KeyError, ValueError) as exc:  # no plaintext fallback: the service is not started
            raise RuntimeError(f"service {launch.name}: tls: {exc}") from None
        if files is not None:
            env.update({"SPECD_TLS_CERTFILE": files.cert, "SPECD_TLS_KEYFILE": files.key,
                        "SPECD_TLS_MIN_VERSION": files.min_version})
            if files.require_client_cert:
                env.update({"SPECD_TLS_CA_CERTS": str(files.verify_clients_with), "SPECD_TLS_CERT_REQS": str(int(ssl.CERT_REQUIRED))})
        command = [sys.executable, "-m", "bentoml", "serve", launch.target, "--host", launch.host,
                   "--port", str(launch.port), "--working-dir", str(CODE_ROOT)]
        with open(self.log_file(launch.name), "ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} start {' '.join(command)}\n".encode())
            log.flush()
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=CODE_ROOT, start_new_session=True)
        self._children[proc.pid] = proc
        start_time = None
        for _ in range(200):
            start_time = process_start_time(proc.pid)
            if start_time is not None or proc.poll() is not None:
                break
            time.sleep(0.005)
        self._write_record(launch.name, {
            "pid": proc.pid, "start_time": start_time, "launch": asdict(launch),
            "launch_fingerprint": launch.fingerprint(), "started_at": time.time(), "restarts": restarts,
            "crashes": crashes, "crashed_at": None, "desired": True, "last_exit": None,
        })

    def _kill_group(self, record: dict[str, Any]) -> bool:
        """SIGTERM the arbiter's group (graceful: workers flush their logs), then SIGTERM and finally
        SIGKILL every process of the service that is left — workers included, found by environment."""
        name = record["launch"]["name"]
        pgid = record.get("pid")
        was_running = bool(pgid) and process_start_time(pgid) == record.get("start_time")
        if was_running:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + self.stop_grace_s
            while time.monotonic() < deadline and (process_start_time(pgid) == record.get("start_time")
                                                   or service_processes(self.routing_file(name))):
                self._reap(pgid)
                time.sleep(0.05)
        for sig, wait in ((signal.SIGTERM, self.stop_grace_s / 2), (signal.SIGKILL, 5.0)):
            left = service_processes(self.routing_file(name))
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and service_processes(self.routing_file(name)):
                time.sleep(0.05)
        if pgid:
            self._reap(pgid)
        return was_running

    def _reap(self, pid: int) -> None:
        proc = self._children.get(pid)
        if proc is not None and proc.poll() is not None:
            self._children.pop(pid, None)

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.log_file(name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
