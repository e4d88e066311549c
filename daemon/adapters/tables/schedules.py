"""The desired Prefect deployments of the applied tables, as plain `ScheduleEntry` values.

The table adapter owns what a table's build job is (`job_for`), so it also builds the schedule entries;
the engine (`flows.tables.schedules`) only syncs and runs deployments it is handed and never calls back
into the adapter. Imports prefect (through `flows.tables.schedules`): apply path only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from daemon.shared.tls import settings as tls_settings
from flows.tables.schedules import MAINTAIN_FLOW, PREFIX, REFRESH_FLOW, ScheduleEntry

if TYPE_CHECKING:
    from daemon.adapters.tables.adapter import TableAdapter
    from daemon.core.graph import Resource


def entries_for(resources: Sequence[Resource], adapter: TableAdapter, enabled: bool = True) -> list[ScheduleEntry]:
    """The desired schedules of the applied table resources (none when the environment disables them)."""
    if not enabled:
        return []
    out = []
    for resource in resources:
        spec = resource.spec
        if spec.schedule:
            job = adapter.job_for(resource, git_sha=adapter.ctx.revision)
            job["storage_options"] = dict(adapter.ctx.env.storage.storage_options)  # references, resolved in the run
            out.append(ScheduleEntry(f"{PREFIX}{resource.name}", REFRESH_FLOW, spec.schedule, {"job": job}))
        if spec.maintenance.schedule:
            params = {
                "storage_root": adapter.root, "table": resource.name, "compact": spec.maintenance.compact,
                "target_file_mb": spec.maintenance.target_file_mb, "vacuum": spec.maintenance.vacuum,
                "vacuum_hours": spec.retention.vacuum_hours,
            }
            if adapter.ctx.env.storage.storage_options:  # an object store: references, resolved in the run
                params["storage_options"] = dict(adapter.ctx.env.storage.storage_options)
                if tls := tls_settings(adapter.ctx.env.tls):  # its CA (references): the run verifies the endpoint
                    params["tls"] = tls
            out.append(ScheduleEntry(f"{PREFIX}maintain-{resource.name}", MAINTAIN_FLOW, spec.maintenance.schedule, params))
    return out
