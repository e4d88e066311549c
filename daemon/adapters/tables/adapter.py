"""The table adapter: Delta tables observed from their logs, built in a subprocess, restored by version.

Observe reads `_delta_log/*.json` directly (no deltalake import: `plan` over 1,000 tables stays well
under a second) and compares each table's last specd commit with the desired *build key* — fingerprint
+ digest of external inputs (files outside Git, packaged data) + the data ids of upstream tables. So an
edited CSV, or an upstream that was rebuilt, makes a table stale although its spec did not change, and
an earlier version built from the same key can be restored instead of recomputed (`restorable`).

Apply runs the build as `python -m flows.tables.build` in its own process (deltalake panics in forked
children; a crash must not take the daemon down); restore and delete are cheap and run in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.adapters.base import AdapterContext
from daemon.adapters.tables.deployments import (
    ScheduleObserver,
    any_recorded,
    human_cron,
    only_schedule_drift,
    record_path,
    remember,
    wanted,
)
from daemon.core.graph import metadata_digest
from daemon.core.plan import METADATA_REASON, SYNC_REASON, Op
from daemon.core.state import DEGRADED, HEALTHY, MISSING_OBSERVED, ApplyOutcome, Observed
from daemon.shared.corrupt import CorruptState
from daemon.shared.errors import ApplyError, SpecIssue
from daemon.shared.fsio import read_json
from daemon.shared.tls import settings as tls_settings
from flows.tables import (
    BUILD_KEY,
    DATA_DIGEST,
    DATA_ID,
    FINGERPRINT,
    GIT_SHA,
    META_DIGEST,
    OPERATION,
    PRUNE,
    QUALITY,
    QUARANTINE_SUFFIX,
    SPEC,
    UPSTREAM,
    build_key,
    quarantine_name,
    table_uri,
)
from flows.tables.delta_log import TableLog, list_tables, read_table_log
from flows.tables.sources import DEFAULT_ALLOWED_MODULES, SourceContext, input_digest

if TYPE_CHECKING:
    from daemon.core.graph import Graph, Resource
    from daemon.core.plan import Action

DIGESTED_SOURCES = ("file", "package")  # sources whose inputs live outside Git and can be digested cheaply
CALLABLE_MODULES_ENV = "SPECD_TABLE_CALLABLE_MODULES"  # overrides the overlay's tables.callable_modules
INPUTS_CHANGED = "inputs changed"  # drift reason: same spec, different external inputs or upstream data
CODE_ROOT = str(Path(__file__).resolve().parents[3])


def _erased(log: TableLog | None) -> bool:
    """The table's live contents had rows erased (`specd erase`): they differ from a pure rebuild, and
    what downstream tables computed from the old rows must be rebuilt from the live ones."""
    return bool(log and log.latest and log.latest.metadata.get(OPERATION) == "erase")


class TableAdapter:
    kind = "table"

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx
        self.root = ctx.storage_root
        self.state_dir = ctx.home / "tables"

    # ------------------------------------------------------------------------------------ observe
    def observe(self, resources: Sequence[Resource]) -> dict[str, Observed]:
        logs, corrupt = self._read_logs(resources)
        keys = self.expected_keys(resources, logs)
        observed = {r.key: corrupt[r.name] if r.name in corrupt else self._observed(r, logs[r.name], keys[r.name]) for r in resources}
        self._observe_schedules(resources, observed)
        for name, log in logs.items():
            if log is not None and log.latest is not None:  # prometheus_client only then: not for a plan of new tables
                from daemon.adapters.tables.metrics import record_version

                record_version(name, log.version, log.latest.timestamp_ms / 1000)
        desired = {r.name for r in resources}
        for name in list_tables(self.root, self._options()):
            if name in desired or name.endswith(QUARANTINE_SUFFIX):
                continue
            try:
                log = read_table_log(table_uri(self.root, name), self._options())
            except CorruptState:  # not ours to judge: who built it cannot be read either
                continue
            if log is not None and log.latest is not None:  # only tables specd built
                observed[f"table/{name}"] = _live(log, prune=_prune(log.latest.metadata.get(PRUNE, "")))
        self._observe_removed_schedules(desired, observed)
        return observed

    def _read_logs(self, resources: Sequence[Resource]) -> tuple[dict[str, TableLog | None], dict[str, Observed]]:
        """Each desired table's log; a corrupt one becomes a Degraded observation of that table alone."""
        logs: dict[str, TableLog | None] = {}
        corrupt: dict[str, Observed] = {}
        for resource in resources:
            try:
                logs[resource.name] = read_table_log(table_uri(self.root, resource.name), self._options())
            except CorruptState as exc:
                logs[resource.name] = None
                corrupt[resource.name] = unreadable(exc)
        self._corrupt = {name: str(o.message) for name, o in corrupt.items()}
        return logs, corrupt
    def _observe_schedules(self, resources: Sequence[Resource], observed: dict[str, Observed]) -> None:
        """The schedule deployments are part of each table's state: drift reasons and scheduled-run health."""
        if not self.ctx.prefect_api or not (any(r.spec.schedule or r.spec.maintenance.schedule for r in resources) or any_recorded(self.ctx.home)):
            return
        schedules = ScheduleObserver(self.ctx)
        for resource in resources:
            live = observed[resource.key]
            if not live.exists:
                continue
            drift, problem = schedules.drift(resource), schedules.run_problem(resource)
            if drift or problem:
                observed[resource.key] = replace(
                    live, drift=live.drift + tuple(drift),
                    health=DEGRADED if problem else live.health, message=problem or live.message)

    def _observe_removed_schedules(self, desired: set[str], observed: dict[str, Observed]) -> None:
        """A table whose spec is gone keeps no schedule: its deployment is drift of the kept (orphaned) table."""
        if not self.ctx.prefect_api or not any_recorded(self.ctx.home):
            return
        schedules = ScheduleObserver(self.ctx)
        for name in sorted(schedules.tables() - desired):
            key = f"table/{name}"
            if key in observed and observed[key].exists:
                observed[key] = replace(observed[key], drift=observed[key].drift + ("schedule removed: the spec is gone",))

    def expected_keys(self, resources: Sequence[Resource], logs: dict[str, TableLog | None]) -> dict[str, str]:
        """Build key each desired table would have if built now (resources arrive in dependency order)."""
        keys: dict[str, str] = {}
        by_name = {r.name: r for r in resources}  # not a scan per upstream: a no-op cycle stays linear
        for resource in resources:
            spec = resource.spec
            ids = {}
            for up in spec.upstream_tables():
                up_resource = by_name.get(up)
                if up_resource is not None and _rebuilds_whole(up_resource.spec) and up in keys and not _erased(logs.get(up)):
                    ids[up] = keys[up]  # what the upstream holds once it is in sync
                elif up in getattr(self, "_corrupt", {}):  # unreadable upstream: judge by what was built from it
                    ids[up] = _recorded_upstream_id(logs.get(resource.name), up)
                else:  # incremental upstreams: their contents are whatever is live
                    try:
                        log = logs.get(up) if up in logs else read_table_log(table_uri(self.root, up))
                    except CorruptState:
                        log, ids[up] = None, _recorded_upstream_id(logs.get(resource.name), up)
                        continue
                    ids[up] = str(log.latest.metadata.get(DATA_ID, "")) if log and log.latest else "missing"
            keys[resource.name] = build_key(resource.fingerprint, self._digest(resource), ids)
        return keys

    def _digest(self, resource: Resource) -> str | None:
        source = resource.spec.source
        if source.type not in DIGESTED_SOURCES:
            return None
        return input_digest(source, SourceContext(resource.name, self.ctx.data_root, self.ctx.repo_dir))

    def _observed(self, resource: Resource, log: TableLog | None, key: str) -> Observed:
        if log is None:
            return MISSING_OBSERVED
        latest = log.latest
        if latest is None:
            return Observed(exists=True, health=DEGRADED, message="a Delta table not built by specd is in the way")
        meta = latest.metadata
        fingerprint = meta.get(FINGERPRINT)
        drift: list[str] = []
        if fingerprint == resource.fingerprint and meta.get(BUILD_KEY) != key:
            drift.append(INPUTS_CHANGED)  # same spec, different inputs: plan sees a change
        restorable: dict[str, str] = {}
        if resource.spec.cursor is None and resource.spec.write.mode != "append":  # incremental: never roll back
            for commit in log.commits:
                if commit.version != log.version and commit.complete and commit.metadata.get(BUILD_KEY) == key:
                    restorable[str(commit.metadata[FINGERPRINT])] = str(commit.version)
        health, message = HEALTHY, _describe_commit(log)
        if fingerprint == resource.fingerprint and meta.get(META_DIGEST, "") != metadata_digest("table", resource.data):
            drift.append(metadata_change(meta.get(SPEC), resource.data))
        return Observed(
            exists=True, fingerprint=fingerprint, revision=meta.get(GIT_SHA), health=health, message=message,
            restorable=restorable, prune=_prune(meta.get(PRUNE, "")), details=_details(log), drift=tuple(drift),
        )

    # ------------------------------------------------------------------------------------ check
    def check(self, resources: Sequence[Resource], graph: Graph) -> list[SpecIssue]:
        """SQL expressions of the transform stages, parsed by DuckDB at validate/plan time, and derived
        columns that would carry a protected (privacy) column's plaintext."""
        from daemon.adapters.tables.guards import source_problems
        from daemon.adapters.tables.schema_check import column_problems
        from daemon.core.safeyaml import read_text
        from daemon.core.yamlpos import line_for, parse_with_lines
        from flows.tables.expressions import check_many_table_expressions
        from flows.tables.pii import pii_derivations

        issues = []
        prefixes = allowed_modules(self.ctx.env.tables.callable_modules)
        columns = column_problems(resources, self)
        home = self.ctx.home
        verdicts = home / "cache" / "sql-checks.json" if home.is_dir() else None  # kept like the compose cache
        checked = check_many_table_expressions([r.spec for r in resources], verdicts)  # one DuckDB query for all
        data_root = self.ctx.data_root  # a property that builds the path: once, not per table
        for resource, expression_problems in zip(resources, checked, strict=True):
            problems = (expression_problems + pii_derivations(resource.spec)
                        + source_problems(resource.spec, data_root, prefixes) + columns.get(resource.name, []))
            if not problems:
                continue
            try:
                _, lines = parse_with_lines(read_text(self.ctx.repo_dir / resource.path))
            except Exception:
                lines = {}
            for path, message in problems:
                issues.append(SpecIssue(resource.path, line_for(lines, path), ".".join(map(str, path)), message))
        if self.ctx.env.privacy.require_declared:  # privacy by default: undeclared personal columns are errors
            from daemon.adapters.tables.privacy_default import personal_issues

            issues += personal_issues(resources, self)
        return issues

    def warnings(self, resources: Sequence[Resource]) -> list[SpecIssue]:
        """Undeclared personal-looking columns, where the environment does not make them errors."""
        if self.ctx.env.privacy.require_declared:
            return []
        from daemon.adapters.tables.privacy_default import personal_issues

        return personal_issues(resources, self)

    # ------------------------------------------------------------------------------------ describe
    def describe(self, action: Action, resource: Resource | None, live: Observed | None = None) -> str:
        op = action.op
        if action.reason.startswith(METADATA_REASON):
            return "set the Delta table's name and description (no rebuild)"
        if action.follows and action.previous == (resource.fingerprint if resource else None) and not action.reason.startswith(SYNC_REASON):
            return f"rebuild after {', '.join(action.follows)} applies, if its data changed (else nothing)"
        if op == Op.RESTORE:
            return f"restore Delta version {action.restore_from} (no recompute)"
        if op == Op.DELETE:
            return "remove the table and its quarantine"
        if resource is None:
            return "remove its Prefect deployments (the table itself is kept)" if op == Op.UPDATE else ""
        if live is not None and live.health == DEGRADED and live.fingerprint is None and live.message:  # unreadable log
            if live.message.startswith("object store unreachable"):
                return f"built once the object store answers — {live.message}"
            return f"not built until repaired — {live.message}"
        if action.previous == action.fingerprint and only_schedule_drift(action.drift):
            return "write the Prefect deployment (no rebuild)"
        spec = resource.spec
        source = spec.source
        inputs = len(source.inputs) if source.type == "table" else 1
        what = {"overwrite": "rebuild", "merge": "merge", "append": "append"}[spec.write.mode]
        text = f"{what} from {inputs} input{'s' if inputs != 1 else ''} ({source.type}"
        if spec.cursor:
            text += f", rows past the {spec.cursor} watermark"
        if spec.write.mode == "merge":
            text += f", on {', '.join(spec.write.keys)}"
        if spec.partition_by:
            text += f", partitioned by {', '.join(spec.partition_by)}"
        text += ")"
        stages = [name for name in ("clean", "features", "quality", "privacy") if getattr(spec, name) is not None]
        if stages:
            text += ": " + ", ".join(stages)
        scheduled = [f"{w.what} {human_cron(w.cron)}" for w in wanted(resource, self.ctx.env.schedules_enabled).values()] if self.ctx.prefect_api else []
        if scheduled:
            text += "; then " + ", ".join(scheduled)
        if INPUTS_CHANGED in action.drift:
            text += "; inputs changed"
        return text

    # ------------------------------------------------------------------------------------ apply
    def apply(self, action: Action, resource: Resource | None) -> ApplyOutcome:
        op = action.op
        if op == Op.UPDATE and resource is None:  # a removed table kept by prune=false: only its schedules go
            return ApplyOutcome(self.sync_schedules(None, action.name) or "schedules in sync")
        if op == Op.UPDATE and action.previous == action.fingerprint and only_schedule_drift(action.drift):
            assert resource is not None
            return ApplyOutcome(self.sync_schedules(resource) or "schedules in sync")  # nothing to rebuild
        if op in (Op.CREATE, Op.UPDATE):
            assert resource is not None
            if op == Op.UPDATE and not action.reason.startswith(SYNC_REASON):
                now = self._observe_now(resource)  # re-checked here: an upstream may just have applied
                if now.fingerprint == resource.fingerprint and INPUTS_CHANGED not in now.drift:
                    if any(d.startswith(METADATA_REASON) for d in now.drift):
                        return self._with_schedules(self.update_metadata(resource), resource)
                    return self._with_schedules(ApplyOutcome("upstream data unchanged: nothing rebuilt", {"rebuilt": False}), resource)
            outcome = self.build(resource)
            self._set_delta_metadata(resource, copy_latest=True)  # only when the spec's name/description differ
            return self._with_schedules(outcome, resource)
        if op == Op.RESTORE:
            assert resource is not None and action.restore_from is not None
            return self._with_schedules(self.restore(resource, int(action.restore_from)), resource)
        if op == Op.DELETE:
            outcome = self.delete(action.name)
            note = self.sync_schedules(None, action.name)
            return replace(outcome, message=f"{outcome.message}; {note}") if note else outcome
        return ApplyOutcome("nothing to do")

    def _with_schedules(self, outcome: ApplyOutcome, resource: Resource) -> ApplyOutcome:
        note = self.sync_schedules(resource)
        return replace(outcome, message=f"{outcome.message}; {note}") if note else outcome

    def sync_schedules(self, resource: Resource | None, name: str | None = None) -> str:
        """Make this table's Prefect deployments what its spec asks for (none for a deleted table).
        Part of the table's planned action; imports prefect (apply path only)."""
        if not self.ctx.prefect_api:
            return ""
        name = resource.name if resource is not None else name
        assert name is not None
        want = wanted(resource, self.ctx.env.schedules_enabled) if resource is not None else {}
        if not want and not self._has_recorded(name) and not (resource is not None and (resource.spec.schedule or resource.spec.maintenance.schedule)):
            return ""
        from daemon.adapters.tables.schedules import entries_for
        from flows.tables.schedules import sync_schedules

        entries = entries_for([resource], self, enabled=self.ctx.env.schedules_enabled) if resource is not None else []
        try:
            report = sync_schedules(entries, tables={name})
        except Exception as exc:  # Prefect refused or unreachable: the action fails and is retried
            raise ApplyError(f"table {name}: could not write its schedule deployments: {type(exc).__name__}: {exc}",
                             reason="ScheduleSyncFailed", transient=True) from None
        remember(self.ctx.home, name, want)
        changed = {k: v for k, v in report.items() if v and k != "unchanged"}
        if not changed:
            return ""
        text = ", ".join(f"{k} {', '.join(v)}" for k, v in sorted(changed.items()))
        wanted_text = "; ".join(f"{w.what} {human_cron(w.cron)}" for w in want.values())
        return f"schedules {text}" + (f" ({wanted_text})" if wanted_text else "")

    def _has_recorded(self, name: str) -> bool:
        recorded = read_json(record_path(self.ctx.home)) or {}
        return any(isinstance(v, dict) and v.get("table") == name for v in recorded.values())

    def job_for(self, resource: Resource, git_sha: str | None = None) -> dict[str, Any]:
        """The build job (plain JSON data) for one desired table."""
        from flows.tables.build import BuildJob

        spec = resource.spec
        job = asdict(BuildJob(
            name=resource.name,
            spec=dict(resource.data),
            fingerprint=resource.fingerprint,
            git_sha=git_sha or self.ctx.revision,
            storage_root=self.root,
            data_root=str(self.ctx.data_root),
            repo_dir=str(self.ctx.repo_dir),
            state_dir=str(self.state_dir),
            upstream={name: table_uri(self.root, name) for name in spec.upstream_tables()},
            storage_options=self._options() or {},
            prune=spec.prune,
            allowed_modules=allowed_modules(self.ctx.env.tables.callable_modules),
            meta_digest=metadata_digest("table", resource.data),
            require_declared_privacy=self.ctx.env.privacy.require_declared,
            tls=tls_settings(self.ctx.env.tls),
        ))
        if not job["tls"]:
            del job["tls"]  # deployments recorded before TLS existed keep their parameters
        if spec.engine == "dask":
            job["dask"] = self.ctx.env.tables.dask.model_dump(mode="json")
        else:
            del job["dask"]  # likewise: only `engine: dask` tables carry the cluster settings
        return job

    def build(self, resource: Resource, git_sha: str | None = None) -> ApplyOutcome:
        self._readable(resource.name)
        job = self.job_for(resource, git_sha)
        self.ctx.progress(f"table {resource.name}: building")
        started = time.monotonic()
        result = self._run(job)
        from daemon.adapters.tables.metrics import record_build, record_quality_failure

        if not result.get("ok"):
            if result.get("reason") == "QualityFailed":
                record_quality_failure(resource.name, result.get("error", ""))
            raise ApplyError(result.get("error", "build failed"), reason=result.get("reason") or "BuildFailed", transient=bool(result.get("transient")))
        record_build(resource.name, result, time.monotonic() - started)
        message = f"v{result['version']}: {result['message']}" if result.get("committed") else result.get("message", "")
        return ApplyOutcome(message, {"version": result.get("version"), "rows": result.get("rows", {}), "quality": result.get("quality", {})})

    def _observe_now(self, resource: Resource) -> Observed:
        log = self._readable(resource.name)  # a corrupt log: refused with the file named, never built over
        key = self.expected_keys([resource], {resource.name: log})[resource.name]
        return self._observed(resource, log, key)

    def _set_delta_metadata(self, resource: Resource, commit_metadata: dict[str, str] | None = None, copy_latest: bool = False) -> bool:
        """Give the Delta table the spec's name and description (catalogs and `DESCRIBE DETAIL` show them).
        The commit carries specd's metadata (a copy of the build's), so the log's head stays a specd commit."""
        from deltalake import CommitProperties, DeltaTable

        uri = table_uri(self.root, resource.name)
        table = DeltaTable(uri, storage_options=self._options())
        current = table.metadata()
        if (current.name, current.description or "") == (resource.name, resource.spec.description or "") and not commit_metadata:
            return False
        if copy_latest and commit_metadata is None:
            log = read_table_log(uri, self._options())
            commit_metadata = {k: str(v) for k, v in (log.latest.metadata if log and log.latest else {}).items()}
            commit_metadata[OPERATION] = "metadata"
        props = CommitProperties(custom_metadata=commit_metadata) if commit_metadata else None
        changed = False
        if current.name != resource.name:
            table.alter.set_table_name(resource.name, commit_properties=props)
            changed = True
        description = resource.spec.description or ""
        if (current.description or "") != description or (commit_metadata and not changed):
            table.alter.set_table_description(description, commit_properties=props)
            changed = True
        return changed

    def update_metadata(self, resource: Resource) -> ApplyOutcome:
        """A metadata-only change: one commit that sets name/description and records the new metadata
        digest (and prune policy) beside the unchanged lineage. No data file is written."""
        from flows.tables.build import table_lock

        uri = table_uri(self.root, resource.name)
        with table_lock(str(self.state_dir), resource.name):
            log = read_table_log(uri, self._options())
            meta = {k: str(v) for k, v in (log.latest.metadata if log and log.latest else {}).items()}
            meta.update({OPERATION: "metadata", GIT_SHA: self.ctx.revision, META_DIGEST: metadata_digest("table", resource.data),
                         PRUNE: "" if resource.spec.prune is None else str(resource.spec.prune).lower(),
                         SPEC: json.dumps(dict(resource.data), sort_keys=True, separators=(",", ":"), default=str)})
            self._set_delta_metadata(resource, meta)
        return ApplyOutcome(f"metadata updated (v{table_version(uri, self._options())}; no rebuild)", {"rebuilt": False, "metadata": True})

    def restore(self, resource: Resource, version: int) -> ApplyOutcome:
        from deltalake import CommitProperties, DeltaTable

        from flows.tables.build import table_lock
        from flows.tables.quarantine import restore_matching
        from flows.tables.write import commit_with_retries

        uri = table_uri(self.root, resource.name)
        log = self._readable(resource.name)
        earlier = next((c for c in (log.commits if log else ()) if c.version == version), None)
        if earlier is None or not earlier.complete:
            raise ApplyError(f"table {resource.name}: version {version} can no longer be restored (vacuumed)")
        metadata = {k: str(v) for k, v in earlier.metadata.items()}
        metadata.update({OPERATION: "restore", GIT_SHA: self.ctx.revision, "specd.restored_from": str(version),
                         # the data comes back; the metadata stays the spec's own (a description edited since is kept)
                         META_DIGEST: metadata_digest("table", resource.data),
                         SPEC: json.dumps(dict(resource.data), sort_keys=True, separators=(",", ":"), default=str)})
        with table_lock(str(self.state_dir), resource.name):  # not while a build of it runs
            # The quarantine first: killed in between, the plan still shows the restore and a re-run
            # finds the quarantine already matching.
            note = restore_matching(self.root, resource.name, earlier.metadata, self.ctx.revision, self._options())
            table = DeltaTable(uri, storage_options=self._options())
            commit_with_retries(lambda: table.restore(version, commit_properties=CommitProperties(custom_metadata=metadata)), resource.name)
        self._set_delta_metadata(resource, copy_latest=True)  # Delta's restore brought the old description back
        from daemon.adapters.tables.metrics import record_version

        record_version(resource.name, table_version(uri, self._options()))
        return ApplyOutcome(f"restored version {version} as v{table_version(uri, self._options())} (no recompute){note}")

    def delete(self, name: str) -> ApplyOutcome:
        from daemon.shared import storage_uri

        for target in (name, quarantine_name(name)):
            storage_uri.delete_tree(table_uri(self.root, target), self._options())
        return ApplyOutcome(f"removed table {name}")

    # ------------------------------------------------------------------------------------ helpers
    def _readable(self, name: str) -> TableLog | None:
        """The table's log, or an ApplyError naming the corrupt file: never build or restore on top of a
        log that cannot be read (a repair is a person's decision; the table stays Degraded meanwhile)."""
        from flows.tables.delta_log import StoreUnreachable

        try:
            return read_table_log(table_uri(self.root, name), self._options())
        except StoreUnreachable as exc:
            raise ApplyError(f"table {name}: {exc}", reason="StoreUnreachable", transient=True) from None
        except CorruptState as exc:
            raise ApplyError(f"table {name}: {exc}; repair or remove the file (the table is left as it is)") from None

    def _run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Warm spawn workers by default; SPECD_TABLE_BUILD_PROCESS=1 runs each build as its own process;
        with tables.work_pool, a deployment run on that pool (daemon.adapters.tables.pool)."""
        if self.ctx.env.tables.work_pool:
            from daemon.adapters.tables.pool import build_on_pool

            return build_on_pool(self.ctx, job)
        if os.environ.get("SPECD_TABLE_BUILD_PROCESS") == "1":
            return run_build_process(job, self.state_dir)
        from daemon.adapters.tables import workers as tables_workers

        workers = max(1, min(self.ctx.env.daemon.max_parallel_actions, os.cpu_count() or 1))
        return tables_workers.run(job, workers)

    def _options(self) -> dict[str, str] | None:
        from daemon.shared.storage_uri import client_options

        return client_options(self.ctx.env.storage.storage_options, self.ctx.env.tls, self.ctx.home)


def run_build_process(job: dict[str, Any], state_dir: Path) -> dict[str, Any]:
    """Run one build as `python -m flows.tables.build` and return its result payload."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="job-", dir=state_dir) as work:
        job_path, result_path = Path(work) / "job.json", Path(work) / "result.json"
        job_path.write_text(json.dumps(job))
        env = dict(os.environ)
        env["PYTHONPATH"] = CODE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        process = subprocess.run(
            [sys.executable, "-m", "flows.tables.build", str(job_path), str(result_path)],
            env=env, capture_output=True, text=True, check=False,
        )
        if result_path.exists():
            return json.loads(result_path.read_text())
        tail = (process.stderr or "").strip().splitlines()[-5:]
        how = f"signal {-process.returncode}" if process.returncode < 0 else f"exit code {process.returncode}"
        return {"ok": False, "transient": True, "reason": "BuildCrashed",
                "error": f"table {job['name']}: build process died ({how}): " + " | ".join(tail)}


def allowed_modules(configured: Sequence[str] = ()) -> tuple[str, ...]:
    """`_target_` module prefixes a callable source may use: the built-in ones plus the environment
    overlay's `tables.callable_modules`, or SPECD_TABLE_CALLABLE_MODULES (comma-separated) when set."""
    override = os.environ.get(CALLABLE_MODULES_ENV)
    extra = override.split(",") if override is not None else list(configured)
    return DEFAULT_ALLOWED_MODULES + tuple(dict.fromkeys(p.strip() for p in extra if p.strip()))


def table_version(uri: str, options: dict[str, str] | None = None) -> int | None:
    log = read_table_log(uri, options)
    return log.version if log else None


def _rebuilds_whole(spec: Any) -> bool:
    """Overwrite tables are a pure function of their build key; incremental ones accumulate."""
    return spec.write.mode == "overwrite" and spec.cursor is None


def unreadable(exc: CorruptState) -> Observed:
    """A table whose Delta log cannot be read: Degraded, naming the file; unknown fingerprint (the plan
    shows it as changed, and the build refuses to run over the broken log)."""
    from flows.tables.delta_log import StoreUnreachable

    message = f"{'object store unreachable' if isinstance(exc, StoreUnreachable) else 'Delta log unreadable'}: {exc}"
    return Observed(exists=True, fingerprint=None, health=DEGRADED, message=message, drift=(message,))


def _recorded_upstream_id(log: TableLog | None, upstream: str) -> str:
    """The data id of `upstream` that this table's last build read (lineage in its commit metadata)."""
    if log is None or log.latest is None:
        return "unreadable"
    try:
        return str(json.loads(log.latest.metadata.get(UPSTREAM, "{}")).get(upstream, "unreadable"))
    except (ValueError, AttributeError):
        return "unreadable"


def _prune(text: str) -> bool | None:
    return {"true": True, "false": False}.get(str(text).lower())


def _live(log: TableLog, prune: bool | None) -> Observed:
    meta = log.latest.metadata if log.latest else {}
    return Observed(exists=True, fingerprint=meta.get(FINGERPRINT), revision=meta.get(GIT_SHA), health=HEALTHY,
                    message=_describe_commit(log), prune=prune, details=_details(log))


def _describe_commit(log: TableLog) -> str:
    latest = log.latest
    if latest is None:
        return f"v{log.version}"
    meta = latest.metadata
    rows = meta.get("specd.rows_written")
    text = f"v{log.version}" + (f": {rows} rows" if rows is not None else "")
    quarantined = meta.get("specd.rows_quarantined")
    if quarantined not in (None, "0"):
        text += f", {quarantined} quarantined"
    try:
        status = json.loads(meta.get(QUALITY, "{}")).get("status")
    except ValueError:
        status = None
    if status == "warned":
        text += " (quality warnings)"
    return text


def _details(log: TableLog) -> dict[str, Any]:
    latest = log.latest
    meta = latest.metadata if latest else {}
    return {
        "version": log.version,
        "last_commit_ms": latest.timestamp_ms if latest else None,
        "rows": {k.removeprefix("specd.rows_"): int(v) for k, v in meta.items() if k.startswith("specd.rows_") and str(v).isdigit()},
        "watermark": meta.get("specd.watermark"),
        "data_id": meta.get(DATA_ID),
        "data_digest": meta.get(DATA_DIGEST),
        "rows_total": latest.rows if latest else None,
        "spec": _json(meta.get(SPEC)),
    }


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if text else None
    except (TypeError, ValueError):
        return None


def metadata_change(applied_spec: Any, desired: Any) -> str:
    """The drift reason of a metadata-only change, naming the fields that changed."""
    from daemon.core.graph import metadata_of

    before = metadata_of("table", _json(applied_spec) or {})
    after = metadata_of("table", desired)
    fields = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)) or ["metadata"]
    return f"{METADATA_REASON}: {', '.join(fields)}"
