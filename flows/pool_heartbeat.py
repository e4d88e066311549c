"""The heartbeat of a work-pool run, both sides: the worker's flow beats it, the daemon watches it.

Why shared: a training candidate (`flows.training.pool`) and a table build (`flows.tables.pool`) both run
on a worker the daemon cannot see. A worker killed with -9, or its machine gone, leaves its run RUNNING
on the Prefect server until something says otherwise; without a heartbeat that is only noticed at the
run's timeout (hours for a build). So the flow keeps a counter in a Prefect variable `specd-hb-<run id>`
bumped every `SPECD_HEARTBEAT_S` seconds (`Heartbeat`), and the daemon (`HeartbeatWatch`) declares the
run lost once the counter stops changing for the kind's `heartbeat_timeout_s` (a run that has not beaten
yet, still starting a fresh process, gets PENDING_GRACE times that), marks it Crashed with the reason
and submits it again. The flow's own beat reads the run's state first: once the daemon has declared it
lost, the worker stops its work too, so a worker that only lost its network never finishes what another
is doing again.

Light: Prefect is imported inside the functions (the daemon's adapters import this module).
"""

from __future__ import annotations

import contextvars
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.shared import procs
from flows.pool_checkout import worker_name

HEARTBEAT_PREFIX = "specd-hb-"
PENDING_GRACE = 3  # × heartbeat_timeout_s for a run that has not beaten yet (picked up, still starting)


def heartbeat_s() -> float:
    return float(os.environ.get("SPECD_HEARTBEAT_S", "2"))


def heartbeat_name(run_id: str) -> str:
    return f"{HEARTBEAT_PREFIX}{run_id}"


class Heartbeat:
    """A counter in a Prefect variable, bumped every `heartbeat_s()`; watches this run's own state. Once
    superseded it calls `on_superseded(why)`: by default it prints why and stops the process groups of
    `children` (the flow's work, started with start_new_session=True)."""

    def __init__(self, run_id: str, on_superseded: Callable[[str], Any] | None = None, tags: Sequence[str] = ("specd",)):
        self.run_id = run_id
        self.name = heartbeat_name(run_id)
        self.on_superseded = on_superseded or self.stop_children
        self.children: list[subprocess.Popen] = []
        self.tags = list(tags)
        self.beats = 0
        self.superseded = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._beat()
        # The later beats run in a copy of this thread's context: a new thread starts with an empty one, so
        # its Prefect client would read the process's root settings (frozen when prefect was first imported)
        # instead of the settings this beat used (a flow run's, or temporary_settings): another API URL, even
        # an ephemeral server of its own, and the daemon would see one beat and declare a live worker lost.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._loop,), name="specd-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def stop_children(self, why: str) -> None:
        print(why)
        for process in self.children:
            procs.stop_child_group(process)

    def _beat(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import VariableCreate, VariableUpdate

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(self.run_id).state  # first: a beat that fails must not hide this
            if state is not None and state.type.value not in ("RUNNING", "PENDING"):
                if not self.superseded:  # the daemon declared this run lost and resubmitted it: stop working
                    self.superseded = True
                    self.on_superseded(f"run {self.run_id} is {state.type.value.lower()} on the server: stopping")
                return
            self.beats += 1
            value = {"beats": self.beats, "worker": worker_name(), "pid": os.getpid()}
            if client.read_variable_by_name(self.name) is None:
                client.create_variable(VariableCreate(name=self.name, value=value, tags=self.tags))
            else:
                client.update_variable(VariableUpdate(name=self.name, value=value))

    def _loop(self) -> None:
        while not self._stop.wait(heartbeat_s()):
            try:
                self._beat()
            except Exception as exc:  # the server being briefly away must not stop the work
                print(f"heartbeat failed: {exc}", file=sys.stderr)


def read_heartbeat(client: Any, run_id: str) -> dict[str, Any] | None:
    variable = client.read_variable_by_name(heartbeat_name(run_id))
    return variable.value if variable is not None and isinstance(variable.value, dict) else None


def forget_heartbeat(client: Any, run_id: str | None) -> None:
    """Delete a finished or lost run's heartbeat variable (absent already is fine)."""
    if run_id is None:
        return
    try:
        client.delete_variable_by_name(heartbeat_name(run_id))
    except Exception:  # never there (the run did not start), or already gone
        pass


def mark_crashed(client: Any, run_id: str | None, reason: str) -> None:
    """Force the run to Crashed with `reason`: terminal, so no worker starts it later."""
    from prefect.states import Crashed

    if run_id is not None:
        client.set_flow_run_state(run_id, Crashed(message=reason), force=True)


@dataclass
class HeartbeatWatch:
    """The daemon's view of one submitted run's heartbeat; `restart()` for each new submission."""

    beats: int = -1
    seen: float = field(default_factory=time.monotonic)  # monotonic time the counter last changed
    worker: str | None = None

    def restart(self) -> None:
        self.beats, self.seen, self.worker = -1, time.monotonic(), None

    def lost(self, client: Any, run_id: str, state: str, timeout_s: float) -> str | None:
        """Why the run's worker is lost (no beat for too long while PENDING/RUNNING), else None."""
        now = time.monotonic()
        if state not in ("PENDING", "RUNNING"):
            self.seen = now  # waiting for a free worker slot is not a lost worker
            return None
        beat = read_heartbeat(client, run_id)
        if beat is not None:
            self.worker = beat.get("worker") or self.worker
            if beat.get("beats") != self.beats:
                self.beats, self.seen = beat.get("beats"), now
        # before its first beat a run is still starting (a fresh process importing Prefect): more grace
        limit = timeout_s * (1 if isinstance(self.beats, int) and self.beats >= 1 else PENDING_GRACE)
        if now - self.seen <= limit:
            return None
        who = f"worker {self.worker}" if self.worker else "its worker (never started)"
        return f"{who} lost: no heartbeat for {now - self.seen:.0f} s"
