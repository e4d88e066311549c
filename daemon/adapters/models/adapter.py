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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.adapters.base import AdapterContext
from daemon.adapters.models.check import check_models, source_table
from daemon.core.state import DEGRADED, HEALTHY, ApplyOutcome, Observed
from daemon.shared.corrupt import CorruptState
from daemon.shared.errors import ApplyError, SpecIssue
from daemon.shared.paths import bentoml_home, logs_dir, runtime_dir
from flows.training import registry

if TYPE_CHECKING:
    from daemon.core.graph import Graph, Resource
    from daemon.core.plan import Action


class ModelAdapter:
    kind = "model"

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx
        self.root = str(bentoml_home(ctx.home))
        self._resources: dict[str, Resource] = {}
        self._drift_reasons: dict[str, str] = {}  # model -> "features drifted: ..." from the last observe

    # -- observe -------------------------------------------------------------------------------------
    def observe(self, resources: Sequence[Resource]) -> dict[str, Observed]:
        names = {r.name for r in resources} | set(registry.list_models(self.root))
        self._resources = {r.name: r for r in resources}
        return {f"model/{name}": self._observe_guarded(name) for name in sorted(names)}

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

        from daemon.adapters.models.drift import DRIFT_SUFFIX, observe_drift

        try:
            report = observe_drift(self.ctx, name, resource.spec, registry.current_release(name, self.root))
        except Exception as exc:  # no log yet, unreadable table: never fail observe over monitoring
            return replace(observed, details={**observed.details, "drift": f"drift check failed: {type(exc).__name__}: {exc}"})
        details = {**observed.details, "drift_share": report.share, "drift_rows": report.current_rows}
        if not report.dataset_drift:
            return replace(observed, details=details)
        reason = report.reason()
        self._drift_reasons[name] = reason
        if not resource.spec.monitoring.retrain_on_drift:
            return replace(observed, message=f"{observed.message}; {reason}", details=details)
        return replace(observed, fingerprint=observed.fingerprint + DRIFT_SUFFIX, details=details, drift=(reason,))

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

    def describe(self, action: Action, resource: Resource | None) -> str:
        if action.op == "restore":
            return "make the earlier release current again (no training)"
        if action.op in ("delete",):
            return "remove the model's releases and stored artifacts"
        if resource is None:
            return ""
        if action.op == "update" and (action.previous or "").endswith("+drift"):
            reason = self._drift_reasons.get(action.name, "production traffic drifted")
            return f"retrain on the table's latest data version ({reason}); promote by {resource.spec.promotion.metric}"
        spec = resource.spec
        env = self.ctx.env.training
        unit = "GPU" if env.accelerator in ("gpu", "cuda") else "CPU"
        margin = spec.promotion.min_improvement
        needed = f"by ≥ {margin:g}" if margin > 0 else "any improvement"
        folds = f", {spec.split.folds}-fold CV" if spec.split.folds else ""
        rule = f"promote by {spec.promotion.metric} ({spec.metric_direction()}, {needed})"
        try:
            from daemon.adapters.models.train import preview

            uri, options = source_table(self.ctx, spec.data.table)
            to_train, reused, minutes = preview(self.ctx, resource, uri, options, self.root)
        except Exception:  # no live table yet (or unreadable): say what the spec asks for
            names = ", ".join(spec.candidates)
            return f"train up to {len(spec.candidates)} candidate(s) ({names}) on {unit}{folds}, {rule}"
        work = f"train candidate{'s' if len(to_train) != 1 else ''} {', '.join(to_train)} on {unit}{folds}" if to_train else "train nothing"
        if minutes is not None:
            work += f" (~{max(minutes, 0.1):.1f} {unit}-min)"
        if reused:
            work += f", reuse {', '.join(reused)} from the store"
        return f"{work}; {rule}"

    # -- apply ---------------------------------------------------------------------------------------
    def apply(self, action: Action, resource: Resource | None) -> ApplyOutcome:
        if action.op == "restore":
            return self._restore(action)
        if action.op == "delete":
            return self._delete(action.name)
        if action.op in ("create", "update"):
            assert resource is not None
            return self._train(resource, retrain=(action.previous or "").endswith("+drift"))
        return ApplyOutcome(f"nothing to do ({action.op})")

    def _restore(self, action: Action) -> ApplyOutcome:
        from daemon.adapters.models import metrics as models_metrics
        from flows.training.artifact import artifact_complete

        fingerprint = action.fingerprint or ""
        release = registry.release_for(action.name, fingerprint, self.root)
        if release is None:
            raise ApplyError(f"model {action.name}: no release for fingerprint {fingerprint[:12]} to restore")
        missing = [t for t in (release.champion, *release.challengers) if t and not artifact_complete(t, self.root)]
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

    def _train(self, resource: Resource, retrain: bool = False) -> ApplyOutcome:
        from daemon.adapters.models.train import train_model

        try:
            existing = registry.release_for(resource.name, resource.fingerprint, self.root)
        except CorruptState:  # a torn release for this fingerprint: train again and write it whole
            existing = None
        if retrain:  # drift: train again at the table's current Delta version; the new release replaces this one
            existing = None
        if existing is not None:  # crashed after writing the release, before the pointer: finish the job
            registry.set_current(resource.name, resource.fingerprint, self.root)
            return ApplyOutcome(f"release exists: {existing.decision}", {"champion": existing.champion, "trained": []})
        uri, options = source_table(self.ctx, resource.spec.data.table)
        started = time.monotonic()
        outcome = train_model(
            self.ctx, resource, uri, options, self.root,
            work_dir=runtime_dir(self.ctx.home) / "training" / resource.name / resource.fingerprint[:16],
            log_dir=logs_dir(self.ctx.home) / "training" / resource.name,
            tensorboard_dir=str(logs_dir(self.ctx.home) / "tensorboard"),
        )
        details: dict[str, Any] = dict(outcome.details)
        details["seconds"] = round(time.monotonic() - started, 2)
        return ApplyOutcome(outcome.message, details)
