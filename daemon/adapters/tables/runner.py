"""The table kind's lifecycle hooks: a runner serving the schedule deployments, and the build workers.

The deployments themselves are written by each table's planned action (`TableAdapter.sync_schedules`,
recorded in `run/schedules.json`); this hook only keeps one long-lived `python -m flows.tables.schedules
serve` process running while any deployment exists: started on the first tick after one was written,
restarted if it dies, adopted after a daemon crash (pid file with start time) and stopped (SIGINT
first, as Prefect runners expect) when none is left or the daemon stops.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from daemon.adapters.tables import workers
from daemon.adapters.tables.deployments import any_recorded
from daemon.shared import procs
from daemon.shared.paths import logs_dir, runtime_dir

log = logging.getLogger("specd.schedules")


class ScheduleRunner:
    def __init__(self, home: Path):
        self.home = home
        self.pid_file = runtime_dir(home) / "schedules-runner.json"

    def tick(self) -> None:
        record = procs.PidRecord.read(self.pid_file)
        running = record is not None and record.alive()
        wanted = any_recorded(self.home)
        if wanted and not running:
            proc = procs.spawn([sys.executable, "-m", "flows.tables.schedules", "serve", "--poll", "10"], log_path=logs_dir(self.home) / "schedules-runner.log", env=dict(os.environ))
            procs.record_for(proc).write(self.pid_file)
            log.info("started the schedule runner (pid %d)", proc.pid)
        elif not wanted and running:
            self.close()

    def close(self) -> None:
        record = procs.PidRecord.read(self.pid_file)
        if record and record.alive():
            procs.stop_group(record.pid, record.start_time, grace_s=20.0)
        self.pid_file.unlink(missing_ok=True)


class BuildWorkers:
    """The warm build-worker pool: nothing to do on a tick (it reaps itself when idle); shut down on close."""

    def tick(self) -> None:
        return None

    def close(self) -> None:
        workers.shutdown()


def hooks(home: Path, *, prefect: bool, keep_services: bool = False) -> list:
    """Kind.lifecycle of tables: the schedule runner needs Prefect; the workers always exist."""
    return [*([ScheduleRunner(home)] if prefect else []), BuildWorkers()]
