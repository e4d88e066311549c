"""The online adapter: what the online store holds for each table, and materialising it from Delta.

Observe reads each table's meta hash from Redis (the Delta version, fingerprint and data id it holds,
a pending marker left by an interrupted run) and the table's Delta log (its current version and data
id, through `flows.tables.delta_log`), and for small local tables previews the diff of the two versions
so the plan can say `materialise v3 (+120 keys, ~40 changed)`. It imports redis (and, for the preview,
polars and deltalake), never torch, bentoml or prefect.

Apply runs `python -m flows.online.materialize` in its own process (deltalake, memory), after starting the
embedded store when the environment names none. A store that cannot be reached makes the resource
Degraded: with the embedded default and no redis-server installed it stays Degraded ("no online store
reachable") without an action, so the quick start works without Redis and nothing else fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.adapters.base import AdapterContext
from daemon.adapters.online import embedded
from daemon.core.state import DEGRADED, HEALTHY, MISSING, ApplyOutcome, Observed
from daemon.shared.errors import ApplyError
from daemon.shared.tls import resolve as resolve_tls
from flows.online import M_DATA_ID, M_FINGERPRINT, M_KEYS, M_PENDING_VERSION, M_PRUNE, M_VERSION, meta_key, tables_key
from flows.online.store import display_url, embedded_tls, store_settings
from flows.tables import DATA_ID, table_uri
from flows.tables.delta_log import read_table_log

if TYPE_CHECKING:
    from daemon.core.graph import Resource
    from daemon.core.plan import Action

CODE_ROOT = str(Path(__file__).resolve().parents[3])
PREVIEW_MAX_ROWS = 1_000_000  # larger tables: the plan says "diff at apply" instead of reading both versions
APPLY_TIMEOUT_S = 3600.0
_PREVIEWS: dict[tuple, dict[str, int] | None] = {}


class OnlineAdapter:
    kind = "online"

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx
        self.settings = store_settings(ctx.env.online_store, ctx.env.tls)
        self.prefix = self.settings["prefix"]
        self._details: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------------------------ observe
    def _client(self, timeout_s: float | None = None) -> Any:
        from flows.online.store import connect

        return connect(self.settings, timeout_s=timeout_s or min(float(self.settings["timeout_s"]), 2.0))

    def _ping(self) -> bool:
        try:
            return bool(self._client().ping())
        except Exception:
            return False

    def observe(self, resources: Sequence[Resource]) -> dict[str, Observed]:
        embedded_store = self.settings["url"] is None
        if not resources and embedded_store and embedded.running(self.ctx.home) is None:
            return {}  # nothing declared, nothing running: no store to look at
        client = self._client()
        try:
            client.ping()
        except Exception as exc:
            return {r.key: self._unreachable(r, exc) for r in resources}
        pipe = client.pipeline(transaction=False)
        for resource in resources:
            pipe.hgetall(meta_key(self.prefix, resource.name))
            pipe.ttl(meta_key(self.prefix, resource.name))
        pipe.smembers(tables_key(self.prefix))
        replies = pipe.execute()
        observed: dict[str, Observed] = {}
        for i, resource in enumerate(resources):
            meta, ttl_left = _text(replies[2 * i]), replies[2 * i + 1]
            observed[resource.key] = self._observed(resource, meta, ttl_left)
        desired = {r.name for r in resources}
        for raw in sorted(replies[-1] or ()):
            table = raw.decode() if isinstance(raw, bytes) else raw
            if table in desired:
                continue
            meta = _text(client.hgetall(meta_key(self.prefix, table)))
            if meta.get(M_FINGERPRINT):
                self._details[f"online/{table}"] = {"keys": int(meta.get(M_KEYS) or 0)}
                observed[f"online/{table}"] = Observed(
                    exists=True, fingerprint=meta[M_FINGERPRINT], health=HEALTHY, prune=_prune(meta.get(M_PRUNE, "")),
                    message=f"v{meta.get(M_VERSION)} materialised: {meta.get(M_KEYS)} keys (no spec)")
        return observed

    def _unreachable(self, resource: Resource, exc: Exception) -> Observed:
        where = display_url(self.settings)
        if self.settings["url"] is None:
            if not embedded.installed():
                # Nothing can be done about it from here: stay Degraded, plan no action, fail nothing else.
                return Observed(exists=True, fingerprint=resource.fingerprint, health=DEGRADED,
                                message="no online store reachable: online_store.url is unset and redis-server is not installed")
            return Observed(exists=False, health=MISSING, message=f"the embedded online store is not running yet ({where}); apply starts it")
        return Observed(exists=True, fingerprint=None, health=DEGRADED,
                        message=f"no online store reachable at {where}: {type(exc).__name__}: {exc}")

    def _observed(self, resource: Resource, meta: dict[str, str], ttl_left: int) -> Observed:
        spec = resource.spec
        uri = table_uri(self.ctx.storage_root, spec.table)
        log = read_table_log(uri, self._options())
        target = log.version if log else None
        data_id = str(log.latest.metadata.get(DATA_ID, "")) if log and log.latest else ""
        details: dict[str, Any] = {"target_version": target, "version": _int(meta.get(M_VERSION)), "keys": _int(meta.get(M_KEYS))}
        drift: list[str] = []
        if not meta.get(M_FINGERPRINT):
            exists, fingerprint = False, None
        else:
            exists, fingerprint = True, meta[M_FINGERPRINT]
            if fingerprint == resource.fingerprint:
                if meta.get(M_PENDING_VERSION):
                    drift.append(f"an interrupted materialisation of v{meta[M_PENDING_VERSION]} (the next run rewrites every key)")
                elif target is not None and ((data_id and meta.get(M_DATA_ID) != data_id) or (not data_id and str(target) != meta.get(M_VERSION))):
                    drift.append(f"table {spec.table} is at v{target}, the store holds v{meta.get(M_VERSION)}")
                elif spec.ttl_s and 0 <= ttl_left < spec.ttl_s / 2:
                    drift.append(f"TTL refresh due ({ttl_left} s of {spec.ttl_s} s left)")
                if drift:
                    fingerprint = f"{fingerprint}+stale"
        if target is not None and fingerprint != resource.fingerprint:
            details["preview"] = self._preview(resource, uri, meta, target, log)
        self._details[resource.key] = details
        if not exists:
            return Observed(exists=False, details=details, message=f"table {spec.table} not materialised yet")
        message = f"v{meta.get(M_VERSION)} materialised: {meta.get(M_KEYS)} keys" + (f", ttl {spec.ttl_s} s" if spec.ttl_s else "")
        return Observed(exists=True, fingerprint=fingerprint, revision=None, health=HEALTHY, message=message,
                        prune=_prune(meta.get(M_PRUNE, "")), details=details, drift=tuple(drift))

    def _preview(self, resource: Resource, uri: str, meta: dict[str, str], target: int, log: Any) -> dict[str, int] | None:
        rows = log.latest.metadata.get("specd.rows_written") if log.latest else None
        if rows is not None and str(rows).isdigit() and int(rows) > PREVIEW_MAX_ROWS:
            return None
        job = self._job(resource, uri)
        cache_key = (uri, target, json.dumps(meta, sort_keys=True), json.dumps(asdict(job), sort_keys=True))
        if cache_key not in _PREVIEWS:
            from flows.online.materialize import preview

            try:
                _PREVIEWS[cache_key] = preview(job, meta, target)
            except Exception:  # a table mid-build, a column not there yet: the plan says less
                _PREVIEWS[cache_key] = None
            if len(_PREVIEWS) > 1000:
                _PREVIEWS.clear()
        return _PREVIEWS.get(cache_key)

    # ------------------------------------------------------------------------------------ describe
    def describe(self, action: Action, resource: Resource | None, live: Observed | None = None) -> str:
        details = self._details.get(action.key, {})
        if action.op == "delete":
            return f"delete the online keys of table {action.name} ({details.get('keys', '?')} keys)"
        target = details.get("target_version")
        if target is None:
            return "materialise the table's latest version once it is built"
        preview = details.get("preview")
        if preview is None:
            since = details.get("version")
            return f"materialise v{target}" + (f" (diff against v{since} at apply)" if since is not None else "")
        parts = [f"+{preview['added']} keys"]
        if not preview.get("full"):
            parts += [f"~{preview['changed']} changed"] + ([f"-{preview['removed']} removed"] if preview["removed"] else [])
        return f"materialise v{target} ({', '.join(parts)})"

    # ------------------------------------------------------------------------------------ apply
    def apply(self, action: Action, resource: Resource | None) -> ApplyOutcome:
        self._ensure_store()
        if action.op == "delete":
            result = self._run({"store": self.settings, "delete": True, "job": {"table": action.name}})
            return ApplyOutcome(f"removed table {action.name}'s fields from {result['deleted']} keys")
        assert resource is not None
        uri = table_uri(self.ctx.storage_root, resource.spec.table)
        log = read_table_log(uri, self._options())
        if log is None:
            raise ApplyError(f"online {resource.name}: table {resource.spec.table} has no Delta table yet", transient=True)
        data_id = str(log.latest.metadata.get(DATA_ID, "")) if log.latest else ""
        self.ctx.progress(f"online {resource.name}: materialising v{log.version} into {display_url(self.settings)}")
        result = self._run({"store": self.settings, "job": asdict(self._job(resource, uri)), "version": log.version, "data_id": data_id})
        text = (f"v{result['version']} materialised ({result['mode']}): {result['written']} keys written, "
                f"{result['deleted']} removed, {result['unchanged']} unchanged, {result['keys']} keys")
        return ApplyOutcome(text, details=result)

    def _ensure_store(self) -> None:
        if self.settings["url"] is not None:
            return
        try:
            files = resolve_tls(self.ctx.env.tls, self.ctx.home) if embedded_tls(self.settings) else None
            if embedded.ensure(self.ctx.home, int(self.settings["port"]), self._ping, tls=files):
                self.ctx.progress(f"started the embedded online store on 127.0.0.1:{self.settings['port']}")
        except (FileNotFoundError, KeyError) as exc:  # no redis-server, or TLS material that cannot be read
            raise ApplyError(str(exc)) from None
        except (RuntimeError, TimeoutError) as exc:
            raise ApplyError(str(exc), transient=True) from None

    def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            done = subprocess.run([sys.executable, "-m", "flows.online.materialize"], input=json.dumps(request), capture_output=True,
                                  text=True, cwd=CODE_ROOT, timeout=APPLY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ApplyError("online materialisation timed out", transient=True) from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit code {done.returncode}"
            transient = any(word in last for word in ("ConnectionError", "TimeoutError", "BusyLoadingError"))
            raise ApplyError(f"online materialisation failed: {last}", transient=transient)
        return json.loads(done.stdout.strip().splitlines()[-1])

    def _job(self, resource: Resource, uri: str) -> Any:
        from flows.online.materialize import Job

        spec = resource.spec
        return Job(table=spec.table, uri=uri, keys=list(spec.keys), features=list(spec.features), timestamp=spec.timestamp,
                   ttl_s=spec.ttl_s, fingerprint=resource.fingerprint, prune=spec.prune, storage_options=self._options())

    def _options(self) -> dict[str, str]:
        from daemon.shared.storage_uri import client_options

        return client_options(self.ctx.env.storage.storage_options, self.ctx.env.tls, self.ctx.home) or {}


def _text(raw: Any) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in (raw or {}).items()}


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") and str(value).lstrip("-").isdigit() else None


def _prune(text: str) -> bool | None:
    return {"true": True, "false": False}.get(str(text).lower())
