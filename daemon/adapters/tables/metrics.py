"""Table metrics (names fixed in daemon/CONTRACTS.md), on prometheus_client's default registry.

Row counters grow by each committed build's accounting; the version and last-commit gauges are also set
from observation, so a restarted daemon reports the live tables before its first build.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge

ROWS = {
    name: Counter(f"specd_table_rows_{name}_total", f"Rows {name} by table builds", ["table"])
    for name in ("read", "written", "quarantined", "deduplicated", "filtered")
}
LAST_COMMIT = Gauge("specd_table_last_commit_timestamp_seconds", "Time of the table's last specd commit", ["table"])
VERSION = Gauge("specd_table_version", "Current Delta version of the table", ["table"])
QUALITY_FAILURES = Counter("specd_table_quality_failures_total", "Rows (or table checks) failing a quality check", ["table", "check"])


def record_build(table: str, result: dict[str, Any], duration_s: float) -> None:
    if not result.get("committed"):
        return
    for name, value in (result.get("rows") or {}).items():
        if name in ROWS and value:
            ROWS[name].labels(table=table).inc(value)
    for check, count in ((result.get("quality") or {}).get("failures") or {}).items():
        QUALITY_FAILURES.labels(table=table, check=check).inc(count)
    for check in ((result.get("quality") or {}).get("table_checks") or {}):
        QUALITY_FAILURES.labels(table=table, check=check).inc(0)
    record_version(table, result.get("version"))


def record_version(table: str, version: int | None, committed_at: float | None = None) -> None:
    if version is None:
        return
    VERSION.labels(table=table).set(version)
    LAST_COMMIT.labels(table=table).set(committed_at or time.time())


def record_quality_failure(table: str, message: str) -> None:
    """A build that failed its checks (nothing written): count each named check once."""
    import re

    from daemon.shared.scrub import scrub

    for check in re.findall(r"([A-Za-z0-9_.]+): \d+", scrub(message)) or ["build"]:
        QUALITY_FAILURES.labels(table=table, check=check).inc()
