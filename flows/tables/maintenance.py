"""Table maintenance: compaction (`optimize.compact`) and vacuum, per the table's declared policy.

Maintenance commits carry the specd metadata of the build they preserve (operation `compact`/`vacuum`),
so observation still sees the same fingerprint and build key: the data did not change. Vacuum deletes
files that were removed longer than `retention.vacuum_hours` ago, which is exactly what bounds how far
back a restore can go — observe notices (the version's files are gone) and stops offering it.

Runs as scheduled work (a Prefect deployment per table with `maintenance.schedule`, see schedules.py)
or on demand: `python -m flows.tables.maintenance STORAGE_ROOT TABLE [--vacuum-hours H] [--no-compact]`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flows.tables import OPERATION, table_uri


def _carried_metadata(uri: str, operation: str, options: dict[str, str] | None) -> dict[str, str]:
    from flows.tables.delta_log import read_table_log

    log = read_table_log(uri, options)
    meta = {k: str(v) for k, v in (log.latest.metadata if log and log.latest else {}).items()}
    meta[OPERATION] = operation
    return meta


def compact(uri: str, target_file_mb: int = 128, options: dict[str, str] | None = None) -> dict[str, Any]:
    """Rewrite small files into larger ones; returns deltalake's metrics (files added/removed)."""
    from deltalake import CommitProperties, DeltaTable

    from flows.tables.write import commit_with_retries

    table = DeltaTable(uri, storage_options=options)
    meta = _carried_metadata(uri, "compact", options)
    return commit_with_retries(
        lambda: table.optimize.compact(target_size=target_file_mb * 1024 * 1024, commit_properties=CommitProperties(custom_metadata=meta)),
        uri,
    )


def vacuum(uri: str, retention_hours: int, options: dict[str, str] | None = None) -> int:
    """Delete data files no longer referenced by versions younger than `retention_hours`; returns how many."""
    from deltalake import CommitProperties, DeltaTable

    from flows.tables.write import commit_with_retries

    table = DeltaTable(uri, storage_options=options)
    meta = _carried_metadata(uri, "vacuum", options)
    removed = commit_with_retries(
        lambda: table.vacuum(
            retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False,
            commit_properties=CommitProperties(custom_metadata=meta),
        ),
        uri,
    )
    return len(removed or [])


def maintain(storage_root: str, name: str, *, compact_files: bool = True, target_file_mb: int = 128,
             vacuum_files: bool = True, vacuum_hours: int = 168, options: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the declared policy on one table (and its quarantine, which follows the same retention)."""
    from flows.tables import quarantine_name
    from flows.tables.delta_log import read_table_log

    report: dict[str, Any] = {"table": name}
    for target in (name, quarantine_name(name)):
        uri = table_uri(storage_root, target)
        if read_table_log(uri, options) is None:
            continue
        if compact_files:
            metrics = compact(uri, target_file_mb, options)
            report[f"{target}.compacted_files"] = int(metrics.get("numFilesRemoved", 0))
        if vacuum_files:
            report[f"{target}.vacuumed_files"] = vacuum(uri, vacuum_hours, options)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.tables.maintenance")
    parser.add_argument("storage_root")
    parser.add_argument("table")
    parser.add_argument("--vacuum-hours", type=int, default=168)
    parser.add_argument("--target-file-mb", type=int, default=128)
    parser.add_argument("--no-compact", action="store_true")
    parser.add_argument("--no-vacuum", action="store_true")
    args = parser.parse_args(argv)
    report = maintain(args.storage_root, args.table, compact_files=not args.no_compact, target_file_mb=args.target_file_mb,
                      vacuum_files=not args.no_vacuum, vacuum_hours=args.vacuum_hours)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
