"""The service kind's lifecycle hook: the supervisor restarts crashed services between cycles and stops
them when the daemon stops (unless `--keep-services`: the next daemon adopts them, no downtime)."""

from __future__ import annotations

import logging
from pathlib import Path

from daemon.adapters.services.supervisor import Supervisor

log = logging.getLogger(__name__)


class SupervisorHook:
    def __init__(self, home: Path, keep_services: bool):
        self.supervisor = Supervisor(home)
        self.keep_services = keep_services

    def tick(self) -> None:
        self.supervisor.tick()

    def close(self) -> None:
        if self.keep_services:
            return
        stopped = self.supervisor.stop_all()
        if stopped:
            log.info("stopped services: %s", ", ".join(stopped))


def hooks(home: Path, *, prefect: bool, keep_services: bool = False) -> list[SupervisorHook]:
    return [SupervisorHook(home, keep_services)]
