"""Scheduled table work: keep the Prefect deployments equal to the specs, and keep a runner serving them.

After each reconcile the daemon hands the desired schedules (table `schedule:` refreshes and
`maintenance.schedule`) to `flows.tables.schedules.sync_schedules`, which creates, updates and deletes
`specd-table-*` deployments. One long-lived `python -m flows.tables.schedules serve` process runs them;
it is started only once some schedule exists, restarted if it dies, adopted after a daemon crash (pid
file with start time) and stopped (SIGINT first, as Prefect runners expect) when the daemon stops.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

from daemon.shared import procs
from daemon.shared.paths import logs_dir, runtime_dir

log = logging.getLogger("specd.schedules")


class ScheduleRunner:
    def __init__(self, home: Path):
        self.home = home
        self.pid_file = runtime_dir(home) / "schedules-runner.json"
        self.synced_digest: str | None = None
        self.wanted = False

    def sync(self, desired, adapters) -> None:
        """Create/update/delete deployments for the applied revision (imports prefect: apply path only)."""
        tables = [r for r in desired.graph.resources if r.kind == "table"]
        if not any(r.spec.schedule or r.spec.maintenance.schedule for r in tables) and self.synced_digest in (None, "none"):
            self.synced_digest = "none"
            return
        from daemon.adapters.tables.schedules import entries_for
        from flows.tables.schedules import sync_schedules

        entries = entries_for(tables, adapters["table"], enabled=desired.composed.env.schedules_enabled)
        digest = hashlib.sha256(repr(sorted((e.deployment, e.cron, repr(e.parameters)) for e in entries)).encode()).hexdigest()
        if digest != self.synced_digest:
            changes = sync_schedules(entries)
            log.info("schedules: %s", {k: v for k, v in changes.items() if v} or "in sync")
            self.synced_digest = digest
        self.wanted = bool(entries)
        self.tick()

    def tick(self) -> None:
        record = procs.PidRecord.read(self.pid_file)
        running = record is not None and record.alive()
        if self.wanted and not running:
            proc = procs.spawn([sys.executable, "-m", "flows.tables.schedules", "serve", "--poll", "10"], log_path=logs_dir(self.home) / "schedules-runner.log", env=dict(os.environ))
            procs.record_for(proc).write(self.pid_file)
            log.info("started the schedule runner (pid %d)", proc.pid)
        elif not self.wanted and running:
            self.stop_all()

    def stop_all(self) -> None:
        record = procs.PidRecord.read(self.pid_file)
        if record and record.alive():
            procs.stop_group(record.pid, record.start_time, grace_s=20.0)
        self.pid_file.unlink(missing_ok=True)
