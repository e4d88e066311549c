"""Model adapter: observe releases, train candidates in their own processes, promote by the rule, roll back.

Live state is the model store itself: `flows.training.registry` release files (one per model
fingerprint, plus `current.json`) and the BentoML model directories they point to. `observe` reads only
those small files — no torch, bentoml or prefect — so `specd plan` stays fast. A release existing for
the desired fingerprint means "nothing to train"; an earlier release whose artifacts still exist is
`restorable`, so a `git revert` makes the old champion current again without training.

`apply` (inside the daemon's Prefect flow run): pin the table's Delta version, fingerprint each
candidate, train the missing ones as `python -m flows.training.run` processes, re-score reused
candidates and the current champion on the same holdout, decide by the promotion rule, then write the
release atomically. A crashed candidate raises ApplyError and writes no release (the champion stays;
the next apply retrains only what is missing); a diverged one is recorded and never promoted.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.adapters.base import AdapterContext
from daemon.adapters.models.check import check_models, source_table
from daemon.adapters.models.retrain import DataState, Decision, decide, last_fire
from daemon.core.plan import SYNC_REASON, Op
from daemon.core.state import DEGRADED, HEALTHY, ApplyOutcome, Observed
from daemon.shared.corrupt import CorruptState
from daemon.shared.errors import ApplyError, SpecIssue
from daemon.shared.paths import bentoml_home, logs_dir, runtime_dir
from flows.training import registry

if TYPE_CHECKING:
    from daemon.core.graph import Graph, Resource
    from daemon.core.plan import Action

PRODUCTION_DRIFT = "production drift"  # Observed.drift reason prefix of a drifted model (retrain_on_drift): plan retrains


class ModelAdapter:
    kind = "model"

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx
        self.root = str(bentoml_home(ctx.home))
        self._resources: dict[str, Resource] = {}

    # -- observe -------------------------------------------------------------------------------------
    def observe(self, resources: Sequence[Resource]) -> dict[str, Observed]:
        desired = {r.name: r for r in resources}
        self._resources = desired  # what _observe_one checks for production drift
        names = set(desired) | set(registry.list_models(self.root))
        out = {}
        for name in sorted(names):
            observed = self._observe_guarded(name)
            resource = desired.get(name)
            if resource is not None and observed.exists and observed.fingerprint == resource.fingerprint:
                observed = self._with_data_state(resource, observed)
            if resource is not None and (observed.fingerprint != resource.fingerprint or observed.drift):
                # a change will be planned: what would it train, on which version? (describe stays pure)
                observed = replace(observed, details={**observed.details, "preview": self._preview(resource)})
            out[f"model/{name}"] = observed
        return out

    def _preview(self, resource: Resource) -> dict[str, Any]:
        """Which candidates would train and which are reused, and the table's version, read now so that
        `describe` stays pure."""
        try:
            uri, options = source_table(self.ctx, resource.spec.data.table)
            if not self._table_exists(uri):  # the usual case of a new model: no training import for it
                raise ApplyError(f"model {resource.name}: source table {resource.spec.data.table!r} does not exist yet at {uri}", transient=True)
            from daemon.adapters.models.train import preview

            to_train, reused, minutes = preview(self.ctx, resource, uri, options, self.root)
            version = self.live_data(resource.spec.data.table).version
        except Exception as exc:  # no live table yet (or unreadable): describe says what the spec asks for
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"to_train": list(to_train), "reused": list(reused), "minutes": minutes, "version": version}

    @staticmethod
    def _table_exists(uri: str) -> bool:
        """False only when a local table certainly has no Delta log (an object store: read by preview)."""
        import os

        from flows.tables.delta_log import LOG_DIR, is_local, local_path

        return not is_local(uri) or os.path.isdir(os.path.join(local_path(uri), LOG_DIR))

    # -- data identity and the retrain policy -------------------------------------------------------------
    def live_data(self, table: str) -> DataState:
        """The source table as its Delta log says now (local or object store)."""
        from daemon.adapters.models.check import source_table
        from flows.tables import DATA_DIGEST, DATA_ID, FINGERPRINT
        from flows.tables.delta_log import read_table_log

        uri, options = source_table(self.ctx, table)
        log = read_table_log(uri, options or None)
        if log is None or log.latest is None:
            return DataState(None, None)
        meta = log.latest.metadata
        return DataState(log.version, meta.get(DATA_DIGEST) or meta.get(DATA_ID), log.latest.rows, spec=meta.get(FINGERPRINT))

    def retrain_decision(self, resource: Resource, release: registry.Release, now: float | None = None) -> Decision:
        spec = resource.spec
        policy = spec.retrain
        now = time.time() if now is None else now
        trained = DataState.of_release(dict(release.data), release.created_at)
        fire_at = last_fire(policy.cron, now) if policy.on == "schedule" and policy.cron else None
        return decide(policy, spec.data.table, trained, self.live_data(spec.data.table), now, fire_at)

    def _with_data_state(self, resource: Resource, observed: Observed) -> Observed:
        release = registry.current_release(resource.name, self.root)
        if release is None:
            return observed
        decision = self.retrain_decision(resource, release)
        details = dict(observed.details)
        details["data"] = {k: release.data.get(k) for k in ("table", "delta_version", "rows", "data_digest")}
        if isinstance(release.data.get("spec"), dict):
            details["spec"] = release.data["spec"]
        if decision.lagging:
            details["lagging"] = decision.reason
        drift = (*observed.drift, f"retrain: {decision.reason}") if decision.fire else observed.drift
        message = decision.reason if decision.lagging else observed.message
        return replace(observed, details=details, drift=drift, message=message)

    def _observe_guarded(self, name: str) -> Observed:
        try:
            return self._observe_one(name)
        except CorruptState as exc:  # a torn release file degrades this model only; apply rewrites it
            message = f"release unreadable: {exc}"
            return Observed(exists=True, fingerprint=None, health=DEGRADED, message=message, drift=(message,))


    def _observe_one(self, name: str) -> Observed:
        observed = self._observe_release(name)
        resource = self._resources.get(name)
        if resource is None or resource.spec.monitoring is None or observed.fingerprint != resource.fingerprint or observed.health != HEALTHY:
            return observed
        return self._with_drift(name, resource, observed)

    def _with_drift(self, name: str, resource: Resource, observed: Observed) -> Observed:
        """Monitored and up to date: a drift beyond the thresholds (with retrain_on_drift) plans a retrain."""
        from dataclasses import replace

        from daemon.adapters.models.drift import observe_drift

        try:
            report = observe_drift(self.ctx, name, resource.spec, registry.current_release(name, self.root))
        except Exception as exc:  # no log yet, unreadable table: never fail observe over monitoring
            return replace(observed, details={**observed.details, "drift": f"drift check failed: {type(exc).__name__}: {exc}"})
        details = {**observed.details, "drift_share": report.share, "drift_rows": report.current_rows}
        if not report.dataset_drift:
            return replace(observed, details=details)
        reason = report.reason()
        if not (resource.spec.monitoring.retrain_on_drift or resource.spec.retrain.on == "drift"):
            return replace(observed, message=f"{observed.message}; {reason}", details=details)
        return replace(observed, details=details, drift=(*observed.drift, f"{PRODUCTION_DRIFT}: {reason}"))

    def _observe_release(self, name: str) -> Observed:
        from flows.training.artifact import artifact_complete

        current = registry.current_release(name, self.root)
        if current is None:
            return Observed(exists=False)
        restorable = {}
        for release in registry.list_releases(name, self.root):
            tags = [t for t in (release.champion, *release.challengers) if t]
            if release.fingerprint != current.fingerprint and all(artifact_complete(t, self.root) for t in tags):
                restorable[release.fingerprint] = release.fingerprint[:12]
        missing = [t for t in (current.champion, *current.challengers) if t and not artifact_complete(t, self.root)]
        health, message = HEALTHY, current.decision
        if (current.data.get("pool") or {}).get("note"):  # trained on a work pool: where, and any lost worker
            message += f" ({current.data['pool']['note']})"
        if current.champion is None:
            health = DEGRADED
        elif missing:
            health, message = DEGRADED, f"artifacts missing from the store: {', '.join(missing)}"
        prune = current.data.get("prune")
        return Observed(exists=True, fingerprint=current.fingerprint, revision=current.git_sha, health=health,
                        message=message, restorable=restorable, prune=prune,
                        details={"champion": current.champion, "challengers": list(current.challengers)})

    def check(self, resources: Sequence[Resource], graph: Graph) -> list[SpecIssue]:
        return check_models(self.ctx, resources, graph)

    def warnings(self, resources: Sequence[Resource]) -> list[SpecIssue]:
        """A work pool without `storage.models_uri`: the workers write into the daemon's store path, which
        then must be a filesystem every server mounts (not an error: a shared NFS mount is a valid setup)."""
        from daemon.adapters.models.pool_checks import shared_disk_warning

        issue = shared_disk_warning(self.ctx) if resources else None
        return [issue] if issue else []

    def describe(self, action: Action, resource: Resource | None, live: Observed | None = None) -> str:
        """Pure: the spec and what observe recorded (`details["preview"]`), no I/O."""
        if action.op == Op.RESTORE:
            return "make the earlier release current again (no training)"
        if action.op == Op.DELETE:
            return "remove the model's releases and stored artifacts"
        if resource is None:
            return ""
        drifted = [d for d in action.drift if d.startswith(PRODUCTION_DRIFT)]
        if action.op == Op.UPDATE and drifted:
            reason = drifted[0].removeprefix(f"{PRODUCTION_DRIFT}: ")
            return f"retrain on the table's latest data version ({reason}); promote by {resource.spec.promotion.metric}"
        spec = resource.spec
        env = self.ctx.env.training
        unit = "GPU" if env.accelerator in ("gpu", "cuda") else "CPU"
        where = f"{unit} on work pool {env.work_pool}{' queue ' + env.work_queue if env.work_queue else ''}" if env.work_pool else unit
        margin = spec.promotion.min_improvement
        needed = f"by ≥ {margin:g}" if margin > 0 else "any improvement"
        folds = f", {spec.split.folds}-fold CV" if spec.split.folds else ""
        rule = f"promote by {spec.promotion.metric} ({spec.metric_direction()}, {needed})"
        table = spec.data.table
        if action.follows:  # the table changes first in this apply: what trains depends on its new data
            names = ", ".join(spec.candidates)
            if action.previous == resource.fingerprint and not action.reason.startswith(SYNC_REASON):
                return (f"after {', '.join(action.follows)} applies: retrain candidates {names} on {where} on table {table}'s new "
                        f"version if its data changed and the {spec.retrain.describe()} fires (else keep the release); {rule}")
            return f"train candidates {names} on {where}{folds} on table {table}'s new version (it changes first in this apply); {rule}"
        preview = dict((live.details if live else {}).get("preview") or {})
        if "to_train" not in preview:  # no live table yet (or unreadable): say what the spec asks for
            names = ", ".join(spec.candidates)
            return f"train up to {len(spec.candidates)} candidate(s) ({names}) on {where}{folds}, {rule}"
        to_train, reused, minutes = preview["to_train"], preview["reused"], preview.get("minutes")
        version = preview.get("version")
        work = f"train candidate{'s' if len(to_train) != 1 else ''} {', '.join(to_train)} on {where}{folds}" if to_train else "train nothing"
        if to_train and version is not None:
            work += f" on {table} v{spec.retrain.table_version if spec.retrain.table_version is not None else version}"
        if minutes is not None:
            work += f" (~{max(minutes, 0.1):.1f} {unit}-min)"
        if reused:
            work += f", reuse {', '.join(reused)} from the store"
        return f"{work}; {rule}"

    # -- apply ---------------------------------------------------------------------------------------
    def apply(self, action: Action, resource: Resource | None) -> ApplyOutcome:
        if action.op == Op.RESTORE:
            return self._restore(action)
        if action.op == Op.DELETE:
            return self._delete(action.name)
        if action.op in (Op.CREATE, Op.UPDATE):
            assert resource is not None
            return self._train(resource, action)
        return ApplyOutcome(f"nothing to do ({action.op})")

    def _restore(self, action: Action) -> ApplyOutcome:
        from daemon.adapters.models import metrics as models_metrics
        from flows.training.artifact import artifact_complete

        fingerprint = action.fingerprint or ""
        release = registry.release_for(action.name, fingerprint, self.root)
        if release is None:
            raise ApplyError(f"model {action.name}: no release for fingerprint {fingerprint[:12]} to restore")
        missing = [t for t in (release.champion, *release.challengers) if t and not artifact_complete(t, self.root)]
        if missing and (shared := self._shared()) is not None:  # on another host: import them from the shared store
            from flows.training import shared_store

            try:
                missing = shared_store.run("ensure", self.root, shared[0], shared[1], tags=missing)["missing"]
            except (RuntimeError, OSError) as exc:
                raise ApplyError(f"model {action.name}: the shared model store is unreachable: {exc}", transient=True) from None
        if missing:
            raise ApplyError(f"model {action.name}: cannot restore, artifacts missing: {', '.join(missing)}")
        registry.set_current(action.name, fingerprint, self.root)
        models_metrics.record_champion(action.name, release.champion)
        models_metrics.record_promotion(action.name, "restored")
        return ApplyOutcome(f"restored release {fingerprint[:12]}: champion {release.champion} (no training)",
                            {"champion": release.champion, "challengers": list(release.challengers), "trained": []})

    def _delete(self, name: str) -> ApplyOutcome:
        registry.delete_model(name, self.root)
        shutil.rmtree(Path(self.root) / "models" / name, ignore_errors=True)
        return ApplyOutcome(f"deleted model {name}")

    def _train(self, resource: Resource, action: Action | None = None) -> ApplyOutcome:
        from daemon.adapters.models.train import train_model

        forced = action is not None and action.reason.startswith(SYNC_REASON)
        # production drift (monitoring.retrain_on_drift): train again at the table's current Delta version
        drifted = action is not None and any(d.startswith(PRODUCTION_DRIFT) for d in action.drift)
        try:
            existing = registry.release_for(resource.name, resource.fingerprint, self.root)
        except CorruptState:  # a torn release for this fingerprint: train again and write it whole
            existing = None
        trigger: dict[str, Any] = {"reason": action.reason if action else "", "op": str(action.op) if action else ""}
        if existing is None and not forced and not drifted and (imported := self._import_release(resource)) is not None:
            return imported
        if existing is not None and not forced and not drifted:
            # Re-checked now (an upstream table may have applied just before): the data it was trained on
            # against the table as it is, under the retrain policy.
            decision = self.retrain_decision(resource, existing)
            if not decision.fire:
                # crashed after writing the release, before the pointer — or data it need not retrain on
                registry.set_current(resource.name, resource.fingerprint, self.root)
                why = decision.reason or "the data it was trained on is unchanged"
                if self._shared() is not None:  # killed between training and publishing: publish now (idempotent)
                    self._publish(resource.name, resource.fingerprint)
                return ApplyOutcome(f"kept release: {why}", {"champion": existing.champion, "trained": [], "retrained": False})
            trigger["reason"] = f"retrain: {decision.reason}"
            trigger["new_rows"] = decision.new_rows
            trigger["previous_version"] = existing.data.get("delta_version")
        uri, options = source_table(self.ctx, resource.spec.data.table)
        started = time.monotonic()
        outcome = train_model(
            self.ctx, resource, uri, options, self.root,
            work_dir=runtime_dir(self.ctx.home) / "training" / resource.name / resource.fingerprint[:16],
            log_dir=logs_dir(self.ctx.home) / "training" / resource.name,
            tensorboard_dir=str(logs_dir(self.ctx.home) / "tensorboard"), trigger=trigger,
        )
        details: dict[str, Any] = dict(outcome.details)
        details["seconds"] = round(time.monotonic() - started, 2)
        message = outcome.message
        if self._shared() is not None:
            uploaded = self._publish(resource.name, resource.fingerprint)
            details["published"] = uploaded
            message += f"; published to {self.ctx.env.storage.models_uri} ({len(uploaded)} new model(s))"
        return ApplyOutcome(message, details)

    # -- the shared model store (storage.models_uri) --------------------------------------------------------
    def _shared(self) -> tuple[str, dict[str, str] | None] | None:
        from daemon.shared.storage_uri import client_options

        uri = self.ctx.env.storage.models_uri
        return (uri, client_options(self.ctx.env.storage.storage_options, self.ctx.env.tls, self.ctx.home)) if uri else None

    def _publish(self, name: str, fingerprint: str) -> list[str]:
        """Export the release and its models to the shared store (every serving host imports from it)."""
        from flows.training import shared_store

        shared = self._shared()
        release = registry.release_for(name, fingerprint, self.root)
        if shared is None or release is None:
            return []
        try:
            return list(shared_store.run("publish", self.root, shared[0], shared[1], release=release.to_json())["uploaded"])
        except (RuntimeError, OSError) as exc:
            raise ApplyError(f"model {name}: trained, but not published to the shared model store: {exc}", transient=True) from None

    def _import_release(self, resource: Resource) -> ApplyOutcome | None:
        """A release another daemon or worker trained at this very fingerprint, imported with its models
        from the shared store instead of training again (None: the shared store has none)."""
        from flows.training import shared_store

        shared = self._shared()
        if shared is None:
            return None
        try:
            result = shared_store.run("fetch", self.root, shared[0], shared[1], model=resource.name, fingerprint=resource.fingerprint)
        except (RuntimeError, OSError) as exc:
            raise ApplyError(f"model {resource.name}: the shared model store is unreachable: {exc}", transient=True) from None
        if not result.get("release"):
            return None
        release = registry.set_current(resource.name, resource.fingerprint, self.root)
        return ApplyOutcome(f"imported release {resource.fingerprint[:12]} from {shared[0]} (no training): champion {release.champion}",
                            {"champion": release.champion, "challengers": list(release.challengers), "trained": [],
                             "imported": result.get("imported", [])})
