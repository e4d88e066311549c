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
import importlib
import logging
import os
import signal
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.adapters.base import Lifecycle
from daemon.core.compose import load_environment
from daemon.core.compose_cache import ComposeCache
from daemon.core.kinds import KINDS, load_object
from daemon.runtime import metrics, operations
from daemon.runtime.cycle import CycleState, run_cycle, status_document
from daemon.runtime.journal import EventType, Journal
from daemon.runtime.prefect_bootstrap import bootstrap_prefect
from daemon.runtime.reconcile import Desired, check, context_for, load_desired, make_adapters
from daemon.runtime.source import GitSource, SourceError
from daemon.runtime.watch import RefWatcher
from daemon.shared import access_policy, procs, tls
from daemon.shared.errors import SpecErrors
from daemon.shared.fsio import atomic_write_json
from daemon.shared.paths import bentoml_home, journal_path, lock_path, status_path
from daemon.shared.scrub import scrub_obj
from daemon.shared.secrets import ENV_READS, resolve_secret

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
class DaemonState:
    cycle: CycleState = field(default_factory=CycleState)  # revisions, statuses, backoff (daemon.runtime.cycle)
    rejected: dict[str, Any] | None = None
    last_cycle: dict[str, Any] = field(default_factory=dict)

    @property
    def applied_revision(self) -> str | None:
        return self.cycle.applied_revision

    @property
    def desired_revision(self) -> str | None:
        return self.cycle.desired_revision


class SyncRequests:
    """Tick hook: a `specd sync` request file under the state home wakes the loop for a cycle now."""

    def __init__(self, home: Path, wake: threading.Event):
        self.home = home
        self.wake = wake

    def tick(self) -> None:
        if operations.pending_syncs(self.home):
            self.wake.set()


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
        self.state = DaemonState(CycleState(max_backoff_s=max_backoff_s))
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.desired_cache: dict[str, Desired] = {}
        self.compose_cache = ComposeCache()  # validated documents by content: a commit recomposes only what changed
        self.last_valid: Desired | None = None
        self.lock = DaemonLock(lock_path(home))
        self.prefect_server = None
        self.metrics_server: metrics.MetricsServer | None = None
        self.listener_tls: dict[str, Any] | None = None  # the tls settings the HTTP server was opened with
        self.listener_deferred = False  # run() found no readable environment: the first cycle that does opens it
        self.watcher = None
        self.keep_services = keep_services
        # Kinds' lifecycle hooks, plus the runtime's own: `specd sync`/`resume` requests wake the loop; the
        # Prefect keeper and the online-promotion ticker join at start-up. Ticked between cycles, closed on stop.
        self.hooks: list[Lifecycle] = [SyncRequests(home, self.wake)]
        self.in_sync_at: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def run(self) -> int:
        self.lock.acquire()
        try:
            self._install_signal_handlers()
            os.environ.setdefault("BENTOML_HOME", str(bentoml_home(self.home)))
            # work-pool workers clone the applied sha from here (training.repo_url overrides)
            os.environ["SPECD_REPO_URL"] = (self.source.repo if self.source.remote else str(Path(self.source.repo).resolve()))
            env = self._bootstrap_environment()
            if env is not None:
                self._start_metrics(env)
            else:  # the HTTP server waits for an environment it can read: never plaintext by default
                self.listener_deferred = True
            self._start_prefect(env)
            self._start_watching(env)
            self._start_supervision()
            self.journal.append(EventType.DAEMON_STARTED, None, pid=os.getpid(), repo=str(self.source.repo), branch=self.source.branch, env=self.env_name)
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
        for hook in reversed(self.hooks):
            try:
                if callable(close := getattr(hook, "close", None)):  # tick-only hooks hold nothing
                    close()
            except Exception:  # best effort on the way out
                log.exception("closing %s failed", hook)
        from daemon.adapters.online import embedded as online_store

        if not self.keep_services and online_store.stop(self.home):  # the services read it: it lives as long as they do
            log.info("stopped the embedded online store")
        if self.watcher:
            self.watcher.stop()
        if self.prefect_server:
            self.prefect_server.stop()
        if self.metrics_server:
            self.metrics_server.stop()
        self.journal.append(EventType.DAEMON_STOPPED, self.state.applied_revision, pid=os.getpid())
        self.lock.release()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

    def _bootstrap_environment(self):
        """The environment of the current head (ports, prefect, tls): composed with its specs, or the
        environment overlay alone when a spec is invalid; None (defaults) when not even that can be read."""
        try:
            self.source.fetch()
            sha = self.source.head()
        except Exception as exc:  # a hostile or broken head must not stop the daemon from starting
            log.warning("cannot read the branch head yet: %s", exc)
            return None
        return self._environment_of(sha)

    def _environment_of(self, sha: str):
        """`sha`'s environment: the composed one, else its overlay alone (a broken spec elsewhere must not
        hide the environment's `tls:` from the HTTP server), else None."""
        try:
            return self._desired(sha).composed.env
        except Exception as exc:
            log.warning("cannot compose revision %s yet: %s", sha[:12], exc)
        try:
            return load_environment(self.source.checkout(sha), self.env_name, self.overrides)
        except Exception as exc:  # nothing a commit holds may stop the daemon
            log.warning("cannot read environment %r at %s: %s; the HTTP server opens once an environment (and its "
                        "tls settings) can be read", self.env_name, sha[:12], exc)
            return None

    def _start_metrics(self, env, port: int | None = None) -> None:
        host = env.daemon.metrics_host if env else "127.0.0.1"
        if port is None:
            port = self.metrics_port_override if self.metrics_port_override is not None else (env.daemon.metrics_port if env else 9464)
        self.listener_tls = tls.settings(env.tls if env else None)
        try:
            context = tls.server_context(files) if (files := tls.resolve(env.tls if env else None, self.home)) and files.serving else None
        except (OSError, ValueError, KeyError, ssl.SSLError) as exc:  # fail closed: no plaintext fallback
            log.error("tls: the HTTP server is not started: %s: %s", type(exc).__name__, exc)
            return
        for module in metrics.KIND_METRICS:  # registered (HELP/TYPE served) from the start, not at a kind's first use
            importlib.import_module(module)
        self.metrics_server = metrics.MetricsServer(host, port, self.status_json, on_sync=self.wake.set, tls=context)
        if self.desired_cache:  # the head's policy before the first request is served, not after a cycle
            self._load_access(list(self.desired_cache.values())[-1])
        self.metrics_server.start()
        log.info("metrics on %s://%s:%d/metrics", self.metrics_server.scheme, host, self.metrics_server.port)

    def _start_prefect(self, env) -> None:
        if not self.use_prefect:
            return
        server = bootstrap_prefect(self.home, env)
        self.prefect_server = server
        if server is None:  # an external Prefect server: not ours to restart
            return
        from daemon.runtime.prefect_keeper import PrefectKeeper

        def restarted(url: str) -> None:
            self.journal.append(EventType.PREFECT_SERVER_RESTARTED, self.state.applied_revision, api_url=url)
            self.wake.set()  # plan again now: a commit may have arrived while the server was down

        self.hooks.append(PrefectKeeper(server, on_restart=restarted))  # restarted with backoff if it dies

    def _start_watching(self, env) -> None:
        if self.source.remote:
            return
        self.watcher = RefWatcher(self.source.git_dir, self.wake.set, env.daemon.debounce_s if env else 0.3).start()

    def _start_supervision(self) -> None:
        """Every kind's lifecycle hooks (restart crashed services, serve schedules, ...): ticked between
        cycles, closed on stop. Then online A/B verdicts → proposal commits (`promotion.online`)."""
        for kind in KINDS:
            if kind.lifecycle:
                self.hooks.extend(load_object(kind.lifecycle)(self.home, prefect=self.use_prefect, keep_services=self.keep_services))
        from daemon.runtime.proposals import ProposalTicker

        self.hooks.append(ProposalTicker(lambda: self.last_valid, self.source.repo, self.source.branch, self.env_name, self.home, self.overrides))

    def _tick(self) -> None:
        for hook in self.hooks:
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
            operations.record_applied_env(self.home, ENV_READS, self.overrides, self.env_name)  # for `plan` elsewhere
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
        self.state.cycle.desired_revision = sha
        if self.listener_deferred and (env := self._environment_of(sha)) is not None:
            self.listener_deferred = False
            self._start_metrics(env)  # deferred at start: the environment (its tls) is known only now
        desired = self._validated(sha)
        if desired is None:
            if self.last_valid is None:
                return
            desired = self.last_valid  # keep the last valid revision converged
        self._follow_tls(desired.composed.env)
        self._load_access(desired)
        try:
            result = self._reconcile(desired, sha)
        except Exception as exc:  # an adapter bug must not kill the daemon
            log.exception("reconcile of %s failed", desired.revision[:12])
            metrics.RECONCILE_RUNS.labels(result="failed").inc()
            self.journal.append(EventType.RECONCILE_FAILED, desired.revision, message=f"{type(exc).__name__}: {exc}")
            return
        elapsed = time.monotonic() - started
        metrics.RECONCILE_DURATION.observe(elapsed)
        metrics.RECONCILE_RUNS.labels(result=result).inc()
        self.state.last_cycle = {"revision": desired.revision, "result": result, "duration_s": round(elapsed, 3), "finished_at": time.time()}
        self._write_status_file()

    def _follow_tls(self, env) -> None:
        """A merged change of `tls:` reopens the HTTP server on the same port with the new settings (no
        daemon restart); material that cannot be read leaves no listener open, never a plaintext one."""
        if self.listener_tls is None or tls.settings(env.tls) == self.listener_tls:
            return
        server = self.metrics_server
        port = server.port if server is not None else None
        access = server.access if server is not None else None
        if server is not None:
            server.stop()
            self.metrics_server = None
        self._start_metrics(env, port)
        if self.metrics_server is not None:
            self.metrics_server.access = access
            log.info("tls settings changed: the HTTP server reopened on %s://", self.metrics_server.scheme)

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
            self.journal.append(EventType.REVISION_REJECTED, sha, errors=errors)
            self._write_status_file()
            return None
        if self.state.rejected:
            self.state.rejected = None
        self.last_valid = desired
        return desired

    def _reconcile(self, desired: Desired, head: str | None = None) -> str:
        ctx = context_for(desired, self.home, progress=lambda message: log.info("%s", message), prefect=self.use_prefect,
                          monitor_runs=True)  # due drift checks: `specd-drift-check` flow runs (Prefect on)
        forced = operations.take_syncs(self.home)  # `specd sync`: refresh these even if they look in sync
        outcome = run_cycle(desired, make_adapters(ctx), self.state.cycle, self.journal, use_prefect=self.use_prefect,
                            head=head, forced=forced)
        if outcome.in_sync:
            # once per revision at INFO (and after every cycle that applied something), else debug
            level = logging.INFO if outcome.results or self.in_sync_at != desired.revision else logging.DEBUG
            log.log(level, "in sync at %s", desired.revision[:12])
            self.in_sync_at = desired.revision
        else:
            self.in_sync_at = None
        return outcome.result

    # -- status ---------------------------------------------------------------------------------------
    def status_json(self) -> dict[str, Any]:
        return status_document(self.state.cycle, rejected=self.state.rejected, last_cycle=self.state.last_cycle)

    def _write_status_file(self) -> None:
        atomic_write_json(status_path(self.home), scrub_obj(self.status_json()), mode=0o644, durable=False)
