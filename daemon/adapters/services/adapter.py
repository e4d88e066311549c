"""Services adapter: observe = read routing file + pid record + /readyz; apply = write routing, ensure process.

The live state of a service *is* its routing file (which fingerprint, which model tags, which weights),
the process that serves it and what each worker reports having loaded. Observing reads those files and
asks `/readyz` with a short timeout — no bentoml, torch or prefect import, so `specd plan` stays fast.

Apply writes the routing file atomically and waits until every worker has loaded it. A model that fails
to load leaves the workers on the previous routing; the adapter then puts the previous routing file back
(so a restarted process serves the last good state too), records the error and fails the action: the
service reports Degraded while the old variants keep serving. A `git revert` of a model changes the
service's fingerprint; apply re-resolves the champion from the model's (restored) current release and
the workers swap back with no restart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.adapters.base import AdapterContext
from daemon.adapters.services.supervisor import Launch, Supervisor, process_start_time
from daemon.core.plan import Op
from daemon.core.state import DEGRADED, HEALTHY, MISSING_OBSERVED, PROGRESSING, ApplyOutcome, Observed
from daemon.schema.service import ServiceSpec, default_port
from daemon.shared.corrupt import CorruptState, read_json
from daemon.shared.errors import ApplyError, SpecIssue
from daemon.shared.fsio import read_json as read_json_or_none
from daemon.shared.paths import bentoml_home
from daemon.shared.tls import settings as tls_settings
from flows.online.store import store_settings

if TYPE_CHECKING:
    from daemon.core.graph import Graph, Resource
    from daemon.core.plan import Action

ACK_TIMEOUT_S = 60.0
HISTORY = 20  # routings remembered per service (restorable fingerprints)
NOT_RUNNING = "process not running"  # drift reason: the plan re-applies to start it again
LAUNCH_CHANGED = "launch settings changed"  # drift reason: port, workers or host differ from the spec
ON_KUBERNETES = "deploy target is kubernetes: the local process stops"  # drift reason (manifests/<name> serves it)


class ServiceAdapter:
    kind = "service"

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx
        self.supervisor = Supervisor(ctx.home, start_timeout_s=ctx.env.services.start_timeout_s)

    # ---- pure helpers ------------------------------------------------------------------------------
    def launch_for(self, name: str, spec: ServiceSpec) -> Launch:
        env = self.ctx.env.services
        return Launch(name, spec.host or env.host, spec.port or default_port(name, env.port_base), spec.workers or env.workers,
                      tls=tls_settings(self.ctx.env.tls) if self.ctx.env.tls.serving else {})

    def on_kubernetes(self, spec: ServiceSpec) -> bool:
        """Served by the Deployments of `manifests/<name>` (Argo CD / Flux), not by a local process."""
        return (spec.deploy.target or self.ctx.env.deploy.target) == "kubernetes"

    def describe(self, action: Action, resource: Resource | None, live: Observed | None = None) -> str:
        if resource is None:
            return "stop the service process (prediction tables are kept)"
        spec: ServiceSpec = resource.spec
        if self.on_kubernetes(spec):
            split = " / ".join(f"{v.name} {round(100 * w)}" for v, w in zip(spec.variants, spec.normalised_weights().values(), strict=True))
            return f"traffic {split} on Kubernetes (manifests/{resource.name}); no local process"
        launch = self.launch_for(resource.name, spec)
        split = " / ".join(f"{v.name} {round(100 * w)}" for v, w in zip(spec.variants, spec.normalised_weights().values(), strict=True))
        return f"traffic {split} on {launch.host}:{launch.port}"

    def check(self, resources: Sequence[Resource], graph: Graph) -> list[SpecIssue]:
        issues: list[SpecIssue] = []
        seen: dict[tuple[str, int], str] = {}
        for resource in resources:
            if resource.kind != self.kind:
                continue
            launch = self.launch_for(resource.name, resource.spec)
            other = seen.setdefault((launch.host, launch.port), resource.name)
            if other != resource.name:
                issues.append(SpecIssue(resource.path, 0, "port", f"port {launch.port} is also used by service {other!r}; set port explicitly"))
        return issues

    # ---- observe ---------------------------------------------------------------------------------------
    def observe(self, resources: Sequence[Resource]) -> dict[str, Observed]:
        desired = {r.name: r for r in resources if r.kind == self.kind}
        live_names = {p.parent.name for p in self.supervisor.root.glob("*/routing.json")} if self.supervisor.root.is_dir() else set()
        out: dict[str, Observed] = {}
        for name in sorted(set(desired) | live_names):
            resource = desired.get(name)
            if resource is not None and self.on_kubernetes(resource.spec):  # the cluster serves it; a local copy must go
                local = self.supervisor.routing_file(name).exists()
                stale = self._image_drift(resource) if resource.spec.artifact.image is not None else None
                out[f"{self.kind}/{name}"] = Observed(True, resource.fingerprint, self.ctx.revision, HEALTHY,
                                                      f"served on Kubernetes (manifests/{name})",
                                                      drift=((ON_KUBERNETES,) if local else ()) + ((stale,) if stale else ()))
                continue
            observed = self._observe_one(name, resource)
            if resource is not None and observed.exists and observed.fingerprint == resource.fingerprint:
                reason = self._release_drift(resource.spec, observed.details.get("variants") or {})
                if reason:
                    from dataclasses import replace

                    observed = replace(observed, drift=(*observed.drift, reason))
            out[f"{self.kind}/{name}"] = observed
        return out

    def _image_drift(self, resource: Resource) -> str | None:
        """A service on Kubernetes whose image was not built for this version and release (the plan builds it)."""
        from daemon.adapters.services.desired_routing import resolve_variant
        from daemon.core.manifests import default_image
        from daemon.shared.images import read_record
        from flows.training.registry import current_release

        spec: ServiceSpec = resource.spec
        if spec.deploy.image.tag is not None:
            return None
        entry = read_record(self.ctx.home, resource.name).get(default_image(resource.name, resource.data, self.ctx.env))
        if entry is None:
            return "image not built for this service version"
        if entry.get("fingerprint") != resource.fingerprint:
            return "image built for another fingerprint"
        lead = next((v for v in spec.variants if v.role == "champion"), spec.variants[0])
        try:
            tag = resolve_variant(lead, current_release(spec.model, root=bentoml_home(self.ctx.home)), spec.model)
        except (LookupError, ValueError):
            return None
        if tag is not None and tag != entry.get("release"):
            return f"model {spec.model} has a new release for the image ({entry.get('release')} → {tag})"
        return None

    def _release_drift(self, spec: ServiceSpec, live_variants: dict[str, Any]) -> str | None:
        """A model retrained on new data keeps its fingerprint but gets a new release: the routing of the
        variants that follow a role (champion/challenger) must move to the release's tags."""
        if not any(v.role for v in spec.variants):
            return None
        from daemon.adapters.services.desired_routing import resolve_variant
        from flows.training.registry import current_release

        release = current_release(spec.model, root=bentoml_home(self.ctx.home))
        for variant in spec.variants:
            if variant.role is None:
                continue
            try:
                tag = resolve_variant(variant, release, spec.model)
            except LookupError:
                return None
            live = (live_variants.get(variant.name) or {}).get("model_tag")
            if tag is not None and live != tag:
                return f"model {spec.model} has a new release ({variant.name}: {live} → {tag})"
        return None

    def _observe_one(self, name: str, resource: Resource | None) -> Observed:
        try:
            routing = read_json(self.supervisor.routing_file(name))
            if routing is not None and not isinstance(routing, dict):
                raise CorruptState(self.supervisor.routing_file(name), "not a JSON object")
        except CorruptState as exc:  # workers keep serving what they loaded; apply writes the file whole
            message = f"routing file unreadable: {exc}"
            return Observed(True, None, None, DEGRADED, message, drift=(message,))
        if routing is None:
            return MISSING_OBSERVED
        fingerprint, revision = routing.get("fingerprint"), routing.get("revision")
        settings = routing.get("settings") or {}
        state = self.supervisor.state(name)
        workers = self.worker_statuses(name)
        details: dict[str, Any] = {"pid": state.pid, "port": state.launch.port if state.launch else None, "restarts": state.restarts,
                                   "variants": {v["name"]: {"model_tag": v["model_tag"], "weight": v["weight"]} for v in routing.get("variants", [])}}
        failure = self._read_json(self.supervisor.service_dir(name) / "apply_error.json")
        prune = settings.get("prune")
        restorable = {p.stem: f"routing {p.stem[:12]}, models already in the store"
                      for p in (self.supervisor.service_dir(name) / "history").glob("*.json") if p.stem != fingerprint}
        if state.launch is None:
            message = "routing exists but no process (stopped)"
            try:
                read_json(self.supervisor.service_dir(name) / "process.json")
            except CorruptState as exc:  # the process record is torn: say so, not "stopped"
                message = f"process record unreadable: {exc}"
            return Observed(True, fingerprint, revision, DEGRADED, message, prune=prune, restorable=restorable, details=details,
                            drift=(NOT_RUNNING,) if resource is not None else ())
        drift = (LAUNCH_CHANGED,) if resource is not None and self.launch_for(name, resource.spec) != state.launch else ()
        if not state.running:
            return Observed(True, fingerprint, revision, DEGRADED, f"process not running: {state.message}", prune=prune, restorable=restorable, details=details, drift=drift)
        degraded = [w for w in workers if w.get("degraded")]
        if failure or degraded:
            message = (failure or {}).get("message") or f"worker {degraded[0]['pid']}: {degraded[0]['error']}"
            return Observed(True, fingerprint, revision, DEGRADED, message, prune=prune, restorable=restorable, details=details, drift=drift)
        online = settings.get("features_from")
        if online and (problem := self._online_problem(online, routing)):  # training/serving consistency
            return Observed(True, fingerprint, revision, DEGRADED, problem, prune=prune, restorable=restorable, details=details, drift=drift)
        if not state.ready:
            return Observed(True, fingerprint, revision, PROGRESSING, "starting (not ready yet)", prune=prune, restorable=restorable, details=details, drift=drift)
        lagging = [w["pid"] for w in workers if w.get("applied_fingerprint") != routing.get("fingerprint")]
        if lagging:
            return Observed(True, fingerprint, revision, PROGRESSING, f"workers {lagging} still loading the routing", prune=prune, restorable=restorable, details=details, drift=drift)
        return Observed(True, fingerprint, revision, HEALTHY, f"serving on {state.launch.host}:{state.launch.port}", prune=prune, restorable=restorable, details=details, drift=drift)

    def _online_problem(self, online: dict[str, Any], routing: dict[str, Any]) -> str | None:
        from flows.online.consistency import serving_problem

        tags = [v["model_tag"] for v in routing.get("variants", []) if v.get("weight", 0) > 0]
        return serving_problem(online["store"], online["table"], tags, bentoml_home(self.ctx.home))

    def worker_statuses(self, name: str) -> list[dict[str, Any]]:
        """Status files of live workers (a dead worker's file is ignored)."""
        statuses = []
        for path in sorted((self.supervisor.service_dir(name) / "workers").glob("*.json")):
            status = self._read_json(path)
            if status and process_start_time(int(status.get("pid", 0))) is not None:
                statuses.append(status)
        return statuses

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any] | None:
        return read_json_or_none(path)

    # ---- apply -------------------------------------------------------------------------------------------
    def apply(self, action: Action, resource: Resource | None) -> ApplyOutcome:
        if action.op == Op.DELETE:
            stopped = self.supervisor.stop(action.name)
            directory = self.supervisor.service_dir(action.name)
            for path in (directory / "routing.json", directory / "apply_error.json"):
                path.unlink(missing_ok=True)
            return ApplyOutcome(f"service {action.name} {'stopped' if stopped else 'was not running'}; routing removed")
        if action.op not in (Op.CREATE, Op.UPDATE, Op.RESTORE) or resource is None:
            return ApplyOutcome(f"nothing to do for {action.op}")
        if self.on_kubernetes(resource.spec):
            stopped = self.supervisor.stop(action.name)
            self.supervisor.routing_file(action.name).unlink(missing_ok=True)
            image = self._cluster_image(resource) if resource.spec.artifact.image is not None else None
            return ApplyOutcome(f"service {action.name} is served on Kubernetes (manifests/{action.name}); "
                                f"local process {'stopped' if stopped else 'not running'}" + (f"; {image[0]}" if image else ""),
                                {"image": image[1]} if image else {})
        return self.deploy(resource)

    def _resolve(self, resource: Resource) -> tuple[Any, list[str]]:
        """The routing this service version serves (model tags of the current release), and notes."""
        from daemon.adapters.services.desired_routing import build_routing
        from daemon.shared.access_policy import load_source

        name, spec = resource.name, resource.spec
        store = bentoml_home(self.ctx.home)
        self._import_models(name, spec.model, store)
        try:
            return build_routing(name, spec, fingerprint=resource.fingerprint, revision=self.ctx.revision,
                                 store=store, storage_root=self.ctx.storage_root,
                                 storage_options=dict(self.ctx.env.storage.storage_options),
                                 online_store=store_settings(self.ctx.env.online_store, self.ctx.env.tls),
                                 access=load_source(self.ctx.repo_dir), tls=tls_settings(self.ctx.env.tls))
        except (LookupError, ValueError, FileNotFoundError) as exc:
            raise ApplyError(f"service {name}: {exc}") from None

    def _cluster_image(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        """A service on Kubernetes runs no process here, but its image is built here: from the routing
        it would serve, written beside (not as) the live routing file."""
        from bentos.routing import write_routing
        from daemon.adapters.services.image import build_image

        routing, _ = self._resolve(resource)
        routing_file = self.supervisor.service_dir(resource.name) / "image" / "routing.json"
        write_routing(routing_file, routing)
        return build_image(self.ctx, resource.name, resource, routing_file, routing)

    def deploy(self, resource: Resource) -> ApplyOutcome:
        from bentos.routing import read_routing, write_routing

        name, spec = resource.name, resource.spec
        routing, notes = self._resolve(resource)
        if spec.prediction_log.enabled:
            self._ensure_tables(routing.settings["prediction_log"], self.ctx.home)
        routing_file = self.supervisor.routing_file(name)
        try:
            previous = read_routing(routing_file)
        except (OSError, ValueError, KeyError):
            previous = None
        write_routing(routing_file, routing)
        launch = self.launch_for(name, spec)
        try:
            self.supervisor.ensure(launch, wait=False)
            self._wait_applied(name, routing.fingerprint, launch.workers)
            self.supervisor.wait_ready(name)
        except _LoadFailed as exc:
            if previous is not None:
                write_routing(routing_file, previous)  # the last good routing stays the live one
            self._record_failure(name, f"routing {routing.fingerprint[:12]} not applied: {exc}")
            raise ApplyError(f"service {name}: a model failed to load, previous routing kept: {exc}") from None
        except (TimeoutError, RuntimeError) as exc:
            raise ApplyError(f"service {name}: {exc}", transient=True) from None
        (self.supervisor.service_dir(name) / "apply_error.json").unlink(missing_ok=True)
        self._remember(name, routing)
        image: dict[str, Any] | None = None
        if spec.artifact.image is not None:  # the bento, then its image (recorded for the manifests)
            from daemon.adapters.services.image import build_image

            note, image = build_image(self.ctx, name, resource, routing_file, routing)
            notes.append(note)
        elif spec.artifact.build:
            notes.append(self._build_bento(name, routing_file))
        split = ", ".join(f"{v.name} {v.weight:.0%} ({v.model_tag})" for v in routing.variants)
        return ApplyOutcome(f"service {name} on {launch.host}:{launch.port}: {split}" + (f"; {'; '.join(notes)}" if notes else ""),
                            {"port": launch.port, "variants": {v.name: v.model_tag for v in routing.variants}, **({"image": image} if image else {})})

    def _import_models(self, name: str, model: str, store: Path) -> None:
        """A serving host whose local store lacks the release's models imports them from the shared
        model store (`storage.models_uri`) before serving; nothing to do when they are all local."""
        uri = self.ctx.env.storage.models_uri
        if not uri:
            return
        from daemon.shared.storage_uri import client_options
        from flows.training import shared_store
        from flows.training.artifact import artifact_complete
        from flows.training.registry import current_release

        try:
            release = current_release(model, root=store)
        except ValueError:  # a torn pointer: build_routing reports it
            return
        tags = [t for t in ((release.champion, *release.challengers) if release else ()) if t and not artifact_complete(t, root=store)]
        if not tags:
            return
        try:
            shared_store.run("ensure", str(store), uri, client_options(self.ctx.env.storage.storage_options, self.ctx.env.tls, self.ctx.home), tags=tags)
        except (RuntimeError, OSError) as exc:
            raise ApplyError(f"service {name}: models {tags} are not in the local store and the shared store failed: {exc}",
                             transient=True) from None

    def _wait_applied(self, name: str, fingerprint: str, workers: int) -> None:
        """Every worker has processed this very file (its identity) and loaded it, or one failed to."""
        from bentos.routing import file_identity

        identity = list(file_identity(self.supervisor.routing_file(name)) or ())
        deadline = time.monotonic() + max(ACK_TIMEOUT_S, self.ctx.env.services.start_timeout_s)
        while time.monotonic() < deadline:
            statuses = [s for s in self.worker_statuses(name) if s.get("seen") == identity]
            failed = [s for s in statuses if s.get("failed_fingerprint") == fingerprint]
            if failed:
                raise _LoadFailed(failed[0].get("error") or "unknown error")
            if sum(1 for s in statuses if s.get("applied_fingerprint") == fingerprint) >= workers:
                return
            state = self.supervisor.state(name, probe=False)
            if not state.running:
                raise RuntimeError(f"process exited while loading the routing\n{self.supervisor.log_tail(name)}")
            time.sleep(0.05)
        raise TimeoutError(f"workers did not load routing {fingerprint[:12]} within the timeout")

    def _remember(self, name: str, routing: Any) -> None:
        """Keep the last HISTORY routings that went live: `plan` shows a revert as a restore."""
        from bentos.routing import routing_to_dict, write_json_atomic

        history = self.supervisor.service_dir(name) / "history"
        write_json_atomic(history / f"{routing.fingerprint}.json", routing_to_dict(routing), mode=0o600)
        for old in sorted(history.glob("*.json"), key=lambda p: p.stat().st_mtime)[:-HISTORY]:
            old.unlink(missing_ok=True)

    def _record_failure(self, name: str, message: str) -> None:
        from bentos.routing import write_json_atomic

        write_json_atomic(self.supervisor.service_dir(name) / "apply_error.json", {"message": message, "at": time.time()}, mode=0o644)

    @staticmethod
    def _ensure_tables(settings: dict[str, Any], home: Path | None = None) -> None:
        """Create the prediction and feedback tables empty, so workers only ever append (no create race)."""
        from deltalake import DeltaTable, write_deltalake

        from bentos.prediction_log import FEEDBACK_COLUMNS, PREDICTION_COLUMNS, arrow_schema
        from daemon.shared.storage_uri import log_options

        options = log_options(settings, home)
        for uri, columns in ((settings["predictions_uri"], PREDICTION_COLUMNS), (settings["feedback_uri"], FEEDBACK_COLUMNS)):
            if DeltaTable.is_deltatable(uri, storage_options=options):
                continue
            if "://" not in uri:
                os.makedirs(uri, exist_ok=True)
            import pyarrow as pa

            write_deltalake(uri, pa.Table.from_pylist([], schema=arrow_schema(columns)), mode="append", storage_options=options)

    def _build_bento(self, name: str, routing_file: Path) -> str:
        import subprocess
        import sys

        env = {**os.environ, "BENTOML_HOME": str(bentoml_home(self.ctx.home))}
        result = subprocess.run([sys.executable, "-m", "bentos.build", str(routing_file)], capture_output=True, text=True,
                                env=env, cwd=str(Path(__file__).resolve().parents[3]), timeout=900)
        if result.returncode != 0:
            return f"bento build failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}"
        return f"bento {result.stdout.strip().splitlines()[-1]}"


class _LoadFailed(Exception):
    """The workers could not load the new routing's models: the previous routing stays."""
