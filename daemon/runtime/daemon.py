"""The daemon: follow a branch and keep the live systems equal to it, until told to stop.

One instance per state home (an flock on `daemon.lock`, released by the kernel even after kill -9).
Wakes on a new local commit (inotify, debounced) or every poll interval (remotes, and drift checks).
Each cycle: fetch → desired (cached per sha) → observe → plan → apply (one Prefect flow run) → status.
An invalid revision is rejected whole and the last valid one keeps being reconciled. A failing resource
is retried with exponential backoff (per fingerprint) while everything else converges. Crash safety
comes from the adapters: every action is idempotent and observe reads the truth back, so a restart
after kill -9 simply plans again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from daemon.core.compose_cache import ComposeCache
from daemon.core.executor import FAILED, SUCCEEDED, ActionResult
from daemon.core.plan import CHANGING, Plan
from daemon.core.status import Journal, ResourceStatus, diff_statuses, resource_statuses
from daemon.runtime import metrics
from daemon.runtime.reconcile import Desired, apply, check, context_for, load_desired, make_adapters, observe, plan
from daemon.runtime.source import GitSource, SourceError
from daemon.shared import access_policy, procs
from daemon.shared.errors import SpecErrors
from daemon.shared.paths import bentoml_home, journal_path, lock_path
from daemon.shared.scrub import scrub_obj
from daemon.shared.secrets import resolve_secret

log = logging.getLogger("specd")


class AlreadyRunning(RuntimeError):
    """Another daemon holds this state home's lock."""


class DaemonLock:
    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.path.read_text().strip() or "another process"
            raise AlreadyRunning(f"another specd daemon (pid {holder}) already owns {self.path.parent}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class Backoff:
    fingerprint: str | None
    failures: int
    retry_at: float


@dataclass
class DaemonState:
    desired_revision: str | None = None
    applied_revision: str | None = None
    rejected: dict[str, Any] | None = None
    statuses: dict[str, ResourceStatus] = field(default_factory=dict)
    last_cycle: dict[str, Any] = field(default_factory=dict)


class Daemon:
    def __init__(self, home: Path, repo: str, branch: str, env_name: str, overrides: tuple[str, ...] = (), *, metrics_port: int | None = None, use_prefect: bool = True, max_backoff_s: float = 300.0, keep_services: bool = False):
        self.home = home
        self.env_name = env_name
        self.overrides = overrides
        self.metrics_port_override = metrics_port
        self.use_prefect = use_prefect
        self.max_backoff_s = max_backoff_s
        self.source = GitSource(repo, branch, home)
        self.journal = Journal(journal_path(home))
        self.state = DaemonState()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.desired_cache: dict[str, Desired] = {}
        self.compose_cache = ComposeCache()  # validated documents by content: a commit recomposes only what changed
        self.last_valid: Desired | None = None
        self.backoff: dict[str, Backoff] = {}
        self.lock = DaemonLock(lock_path(home))
        self.prefect_server = None
        self.metrics_server: metrics.MetricsServer | None = None
        self.watcher = None
        self.keep_services = keep_services
        self.supervisor = None
        self.schedules = None
        self.tick_hooks: list = []

    # -- lifecycle ----------------------------------------------------------------------------------
    def run(self) -> int:
        self.lock.acquire()
        try:
            self._install_signal_handlers()
            os.environ.setdefault("BENTOML_HOME", str(bentoml_home(self.home)))
            env = self._bootstrap_environment()
            self._start_metrics(env)
            self._start_prefect(env)
            self._start_watching(env)
            self._start_supervision()
            self.journal.append("DaemonStarted", None, pid=os.getpid(), repo=str(self.source.repo), branch=self.source.branch, env=self.env_name)
            poll = env.daemon.poll_interval_s if env else 15.0
            while not self.stopping.is_set():
                self.wake.clear()
                try:
                    self.cycle()
                except Exception:  # nothing a commit or the live state holds may stop the loop
                    log.exception("cycle failed; the next one plans again")
                    metrics.RECONCILE_RUNS.labels(result="failed").inc()
                deadline = time.monotonic() + poll
                while not self.stopping.is_set() and not self.wake.is_set() and time.monotonic() < deadline:
                    self.wake.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                    self._tick()
            return 0
        finally:
            self.shutdown()

    def request_stop(self, *_: Any) -> None:
        if self.stopping.is_set():
            return
        log.info("stop requested; finishing")
        self.stopping.set()
        self.wake.set()
        procs.terminate_tracked()

    def shutdown(self) -> None:
        procs.terminate_tracked()
        from daemon.adapters.tables import workers as tables_workers

        tables_workers.shutdown()
        if self.schedules:
            self.schedules.stop_all()
        if self.supervisor and not self.keep_services:
            try:
                stopped = self.supervisor.stop_all()
                if stopped:
                    log.info("stopped services: %s", ", ".join(stopped))
            except Exception:  # best effort on the way out
                log.exception("stopping services failed")
            from daemon.adapters.online import embedded as online_store

            if online_store.stop(self.home):  # the services read it: it lives as long as they do
                log.info("stopped the embedded online store")
        if self.watcher:
            self.watcher.stop()
        if self.prefect_server:
            self.prefect_server.stop()
        if self.metrics_server:
            self.metrics_server.stop()
        self.journal.append("DaemonStopped", self.state.applied_revision, pid=os.getpid())
        self.lock.release()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

    def _bootstrap_environment(self):
        """The environment of the current head (ports, prefect); defaults if the head is invalid."""
        try:
            self.source.fetch()
            desired = self._desired(self.source.head())
            return desired.composed.env
        except Exception as exc:  # a hostile or broken head must not stop the daemon from starting
            log.warning("cannot read the environment at the branch head yet: %s", exc)
            return None

    def _start_metrics(self, env) -> None:
        host = env.daemon.metrics_host if env else "127.0.0.1"
        port = self.metrics_port_override if self.metrics_port_override is not None else (env.daemon.metrics_port if env else 9464)
        self.metrics_server = metrics.MetricsServer(host, port, self.status_json, on_sync=self.wake.set)
        if self.desired_cache:  # the head's policy before the first request is served, not after a cycle
            self._load_access(list(self.desired_cache.values())[-1])
        self.metrics_server.start()
        log.info("metrics on http://%s:%d/metrics", host, self.metrics_server.port)

    def _start_prefect(self, env) -> None:
        if not self.use_prefect:
            return
        from daemon.runtime.prefect_server import LocalPrefectServer, configure_client_env

        configure_client_env(self.home)
        external = os.environ.get("PREFECT_API_URL") or (env.prefect.api_url if env else None)
        if external:
            os.environ["PREFECT_API_URL"] = external
            log.info("using Prefect at %s", external)
            return
        server = LocalPrefectServer(self.home, env.prefect.host if env else "127.0.0.1", env.prefect.port if env else 4200)
        os.environ["PREFECT_API_URL"] = server.start()
        self.prefect_server = server
        log.info("Prefect UI on http://%s:%d", server.host, server.port)
        from daemon.runtime.prefect_keeper import PrefectKeeper

        def restarted(url: str) -> None:
            self.journal.append("PrefectServerRestarted", self.state.applied_revision, api_url=url)
            self.wake.set()  # plan again now: a commit may have arrived while the server was down

        self.tick_hooks.append(PrefectKeeper(server, on_restart=restarted))  # restarted with backoff if it dies

    def _start_watching(self, env) -> None:
        if self.source.remote:
            return
        from daemon.runtime.watch import RefWatcher

        self.watcher = RefWatcher(self.source.git_dir, self.wake.set, env.daemon.debounce_s if env else 0.3).start()

    def _start_supervision(self) -> None:
        """Restart crashed services (with backoff) between cycles; adopt the ones already running."""
        from daemon.adapters.services.supervisor import Supervisor

        self.supervisor = Supervisor(self.home)
        self.tick_hooks.append(self.supervisor)
        if self.use_prefect:
            from daemon.runtime.schedules_runner import ScheduleRunner

            self.schedules = ScheduleRunner(self.home)
            self.tick_hooks.append(self.schedules)

    def _tick(self) -> None:
        for hook in self.tick_hooks:
            try:
                hook.tick()
            except Exception:  # supervision must never kill the loop
                log.exception("tick of %s failed", hook)

    # -- one cycle ------------------------------------------------------------------------------------
    def _desired(self, sha: str) -> Desired:
        if sha not in self.desired_cache:
            checkout = self.source.checkout(sha)
            self.desired_cache = {k: v for k, v in list(self.desired_cache.items())[-4:]}
            self.desired_cache[sha] = load_desired(checkout, self.env_name, sha, self.overrides, self.compose_cache)
        return self.desired_cache[sha]

    def cycle(self) -> None:
        started = time.monotonic()
        try:
            self.source.fetch()
            sha = self.source.head()
        except SourceError as exc:
            log.error("git: %s", exc)
            metrics.RECONCILE_RUNS.labels(result="failed").inc()
            return
        metrics.set_revision(metrics.DESIRED_REVISION, sha)
        self.state.desired_revision = sha
        desired = self._validated(sha)
        if desired is None:
            if self.last_valid is None:
                return
            desired = self.last_valid  # keep the last valid revision converged
        self._load_access(desired)
        try:
            result = self._reconcile(desired)
        except Exception as exc:  # an adapter bug must not kill the daemon
            log.exception("reconcile of %s failed", desired.revision[:12])
            metrics.RECONCILE_RUNS.labels(result="failed").inc()
            self.journal.append("ReconcileFailed", desired.revision, message=f"{type(exc).__name__}: {exc}")
            return
        elapsed = time.monotonic() - started
        metrics.RECONCILE_DURATION.observe(elapsed)
        metrics.RECONCILE_RUNS.labels(result=result).inc()
        self.state.last_cycle = {"revision": desired.revision, "result": result, "duration_s": round(elapsed, 3), "finished_at": time.time()}
        self._write_status_file()

    def _load_access(self, desired: Desired) -> None:
        """Swap the HTTP server's access gate when the policy's digest changes (merge → next cycle)."""
        server = self.metrics_server
        if server is None:
            return
        digest = desired.access.digest if desired.access else None
        if digest == (server.access.digest if server.access else None):
            return
        try:
            gate = access_policy.Gate.from_source(desired.access, resolve_secret) if desired.access else None
            if gate is not None:
                gate.warm([target for target in metrics.ROUTES.values() if target is not None])
            server.access = gate
        except Exception:  # a policy that cannot load keeps the previous one
            log.exception("access policy %s not loaded; the previous one stays", (digest or "")[:12])
            return
        log.info("access policy %s", f"{digest[:12]} loaded" if digest else "removed: the HTTP server is open")

    def _validated(self, sha: str) -> Desired | None:
        if self.state.rejected and self.state.rejected["revision"] == sha:
            return None
        if self.last_valid is not None and self.last_valid.revision == sha:
            return self.last_valid  # validated once per revision: idle cycles only observe
        try:
            desired = self._desired(sha)
            check(make_adapters(context_for(desired, self.home)), desired.graph)
        except Exception as exc:  # nothing a commit contains may crash the daemon: reject it like any invalid one
            if isinstance(exc, SpecErrors):
                errors = [str(i) for i in exc.issues]
            else:
                log.exception("revision %s could not be read", sha[:12])
                errors = [f"<revision {sha[:12]}>: cannot be read: {type(exc).__name__}: {str(exc)[:500]}"]
            log.error("revision %s rejected:\n  %s", sha[:12], "\n  ".join(errors))
            self.state.rejected = {"revision": sha, "errors": errors, "at": time.time()}
            metrics.REJECTED_COMMITS.inc()
            metrics.RECONCILE_RUNS.labels(result="rejected").inc()
            self.journal.append("RevisionRejected", sha, errors=errors)
            self._write_status_file()
            return None
        if self.state.rejected:
            self.state.rejected = None
        self.last_valid = desired
        return desired

    def _reconcile(self, desired: Desired) -> str:
        ctx = context_for(desired, self.home, progress=lambda message: log.info("%s", message))
        adapters = make_adapters(ctx)
        observed = observe(adapters, desired.graph)
        the_plan = self._without_backoff(plan(desired, observed, adapters))
        results: dict[str, ActionResult] = {}
        if the_plan.has_changes:
            log.info("%s", the_plan.to_text())
            self.journal.append("ApplyStarted", desired.revision, actions=[f"{a.op} {a.key}" for a in the_plan.changes])
            self._publish_statuses(desired, observed, results, reconciling=[a.key for a in the_plan.changes])
            for item in apply(the_plan, desired, adapters, use_prefect=self.use_prefect, on_result=self._on_result):
                results[item.key] = item
            observed = observe(adapters, desired.graph)
        statuses = self._publish_statuses(desired, observed, results)
        if self.schedules:
            try:
                self.schedules.sync(desired, adapters)
            except Exception as exc:  # Prefect unreachable: schedules catch up on a later cycle
                log.warning("could not sync schedules: %s", exc)
        failed = any(r.status != SUCCEEDED for r in results.values()) or any(k in self.backoff for k in desired.graph.by_key())
        all_synced = all(s.sync == "Synced" for s in statuses)
        if all_synced and not failed:
            self.state.applied_revision = desired.revision
            metrics.set_revision(metrics.APPLIED_REVISION, desired.revision)
            metrics.LAST_SUCCESS.set(time.time())
            if results:
                self.journal.append("ReconcileSucceeded", desired.revision, actions=len(results))
        in_sync = all_synced and self.state.applied_revision == self.state.desired_revision
        metrics.IN_SYNC.set(1 if in_sync else 0)
        if not results:
            return "noop" if not failed else "failed"
        return "failed" if failed else "success"

    def _without_backoff(self, the_plan: Plan) -> Plan:
        now = time.time()
        deferred = {a.key for a in the_plan.actions if a.op in CHANGING and (b := self.backoff.get(a.key)) and b.fingerprint == a.fingerprint and b.retry_at > now}
        for key in [k for k, b in self.backoff.items() if k not in {a.key for a in the_plan.changes}]:
            self.backoff.pop(key, None)  # converged by other means, or no longer desired
        if not deferred:
            return the_plan
        return replace(the_plan, actions=tuple(a for a in the_plan.actions if a.key not in deferred))

    def _on_result(self, result: ActionResult) -> None:
        kind = result.key.split("/", 1)[0]
        metrics.ACTIONS.labels(kind=kind, op=result.op, result=result.status).inc()
        metrics.ACTION_DURATION.labels(kind=kind, op=result.op).observe(result.duration_s)
        revision = self.state.desired_revision
        if result.status == SUCCEEDED:
            self.backoff.pop(result.key, None)
            log.info("%s %s: %s", result.op, result.key, result.message)
            self.journal.append("ActionSucceeded", revision, resource=result.key, op=result.op, message=result.message, duration_s=round(result.duration_s, 3))
        else:
            desired = self.last_valid.graph.by_key().get(result.key) if self.last_valid else None
            previous = self.backoff.get(result.key)
            failures = (previous.failures + 1) if previous else 1
            delay = min(self.max_backoff_s, 5.0 * 2 ** (failures - 1))
            if result.status == FAILED:
                self.backoff[result.key] = Backoff(desired.fingerprint if desired else None, failures, time.time() + delay)
            log.error("%s %s %s: %s", result.op, result.key, result.status, result.message)
            self.journal.append("ActionFailed" if result.status == FAILED else "ActionBlocked", revision, resource=result.key, op=result.op, message=result.message)

    def _publish_statuses(self, desired: Desired, observed, results, reconciling=()) -> list[ResourceStatus]:
        statuses = resource_statuses(desired.graph, observed, desired.revision, results, reconciling)
        for changed in diff_statuses(self.state.statuses, statuses):
            if not reconciling:
                self.journal.append("StatusChanged", desired.revision, resource=changed.key, sync=changed.sync, health=changed.health, message=changed.message)
        self.state.statuses = {s.key: s for s in statuses}
        metrics.record_statuses(statuses)
        return statuses

    # -- status ---------------------------------------------------------------------------------------
    def status_json(self) -> dict[str, Any]:
        return {
            "revision": self.state.applied_revision,
            "desired_revision": self.state.desired_revision,
            "in_sync": bool(self.state.applied_revision and self.state.applied_revision == self.state.desired_revision),
            "rejected": self.state.rejected,
            "last_cycle": self.state.last_cycle,
            "resources": [s.to_json() for s in self.state.statuses.values()],
        }

    def _write_status_file(self) -> None:
        path = self.home / "status.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(scrub_obj(self.status_json()), indent=1, default=str))
        os.replace(tmp, path)
