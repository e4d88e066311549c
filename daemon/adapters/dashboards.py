"""Dashboards adapter: publishes Grafana dashboards (files or HTTP API) and the Prometheus files.

observe: the embedded default reads the dashboard JSON files back (marker + content hashes); with
`env.grafana.url` it reads each dashboard and its version history from Grafana. A dashboard changed
outside specd is drift: with `on_drift: restore` it is observed as out of date (plan restores it), with
`report` it stays as it is and is reported Degraded. Grafana unreachable → every desired dashboard is
observed Degraded (nothing is deleted on a guess) and apply raises a transient ApplyError.

apply: render the JSON (grafana-foundation-sdk, imported here only), write the resource's Prometheus
files (its alert rules; the platform's scrape config) atomically, then publish the dashboard last, so
its marker records what was completed. Module level and observe stay light: no SDK, no torch/bentoml/prefect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from daemon.adapters.base import AdapterContext
from daemon.core.plan import Op
from daemon.core.state import DEGRADED, HEALTHY, ApplyOutcome, Observed
from daemon.schema.dashboard import DashboardSpec, dashboard_uid
from daemon.shared.errors import ApplyError
from daemon.shared.paths import dashboards_dir

if TYPE_CHECKING:
    from daemon.core.graph import Resource
    from daemon.core.plan import Action
    from dashboards.files import FileStore, LiveDashboard
    from dashboards.grafana_api import GrafanaPublisher

T = TypeVar("T")


class DashboardAdapter:
    kind = "dashboard"

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx
        self.grafana = ctx.env.grafana
        self.root = dashboards_dir(ctx.home)
        self._publisher: GrafanaPublisher | None = None

    # ------------------------------------------------------------------ observe
    def observe(self, resources: Sequence[Resource]) -> dict[str, Observed]:
        desired = [r for r in resources if r.kind == self.kind]
        if self.grafana.url:
            try:
                live = self._observe_grafana(desired)
            except ApplyError as exc:  # unreachable, refused or no token: report, delete nothing
                message = f"Grafana not observable: {exc}"
                return {r.key: Observed(exists=False, health=DEGRADED, message=message, details={"grafana": "unavailable"}) for r in desired}
        else:
            live = self._files().observe()
        wanted = {r.key for r in desired}
        return {key: self._observed(item, key in wanted) for key, item in live.items()}

    def _observed(self, live: LiveDashboard, desired: bool = True) -> Observed:
        details = {"uid": live.uid, "version": live.version, "target": self.grafana.url or str(self.root)}
        if not live.drift:
            return Observed(True, live.fingerprint, live.revision, HEALTHY, "published", live.restorable, live.prune, details)
        if self.grafana.on_drift == "restore" and desired:
            message = f"changed outside specd ({live.drift}); it will be restored"
            return Observed(True, live.fingerprint, live.revision, DEGRADED, message, live.restorable, live.prune, {**details, "drift": live.drift},
                            drift=(f"edited outside specd ({live.drift})",))
        message = f"changed outside specd ({live.drift}); kept because grafana.on_drift is 'report'"
        return Observed(True, live.fingerprint, live.revision, DEGRADED, message, live.restorable, live.prune, {**details, "drift": live.drift})

    def _observe_grafana(self, desired: Sequence[Resource]) -> dict[str, LiveDashboard]:
        from dashboards.files import verify_owned_files

        def read_all(publisher: GrafanaPublisher) -> dict[str, LiveDashboard]:
            keys = {dashboard_uid(r.name): r.key for r in desired}
            live: dict[str, LiveDashboard] = {}
            for uid in sorted(set(keys) | set(publisher.managed_uids())):
                found = publisher.read(uid, keys.get(uid), lambda marker: verify_owned_files(self.root, marker))
                if found is not None:
                    live[found.key] = found
            return live

        return self._call_grafana(read_all)

    # ------------------------------------------------------------------ apply
    def apply(self, action: Action, resource: Resource | None) -> ApplyOutcome:
        op = action.op
        if op in (Op.CREATE, Op.UPDATE, Op.RESTORE):
            if resource is None:
                raise ApplyError(f"dashboard {action.name}: no desired spec to publish")
            return self._publish(action, resource)
        if op == Op.DELETE:
            return self._delete(action)
        return ApplyOutcome(f"nothing to do ({op})")

    def _publish(self, action: Action, resource: Resource) -> ApplyOutcome:
        from dashboards import prometheus
        from dashboards.render import build_dashboard, with_marker

        spec: DashboardSpec = resource.spec
        files = self._files()
        owned = self._prometheus_files(resource.name, spec)
        hashes = files.write_owned(owned)
        model = build_dashboard(resource.name, spec, self.grafana.datasource_uid)
        model = with_marker(model, resource.key, resource.fingerprint, self.ctx.revision, spec.prune, hashes)
        details: dict[str, object] = {"uid": model["uid"], "files": sorted(owned)}
        if self.grafana.url:
            from dashboards.grafana_api import version_message

            version = self._call_grafana(lambda p: p.push(model, version_message(self.ctx.revision, resource.fingerprint)))
            where = f"Grafana {self.grafana.url} folder {self.grafana.folder!r}, version {version}"
            details["version"] = version
        else:
            path = files.write_dashboard(resource.name, model)
            where = str(path)
        message = f"published {model['uid']} ({len(spec.all_panels())} panels, {len(spec.alerts)} alerts) to {where}"
        reload_url = self.ctx.env.prometheus.reload_url
        if owned and reload_url:
            message += "; " + prometheus.reload(reload_url)
        return ApplyOutcome(message, details)

    def _prometheus_files(self, name: str, spec: DashboardSpec) -> dict[str, str]:
        from dashboards import prometheus

        owned: dict[str, str] = {}
        rules = prometheus.alert_rules(name, spec, self.ctx.env.prometheus.runbook_base_url)
        if rules is not None:
            owned[prometheus.rules_path(self.root, name).relative_to(self.root).as_posix()] = prometheus.dump(rules)
        if spec.scrape:
            config = prometheus.scrape_config(self.ctx.env, spec)
            owned[prometheus.config_path(self.root).relative_to(self.root).as_posix()] = prometheus.dump(config)
            if self.grafana.url is None:  # provisioning files: Grafana also needs to know where Prometheus is
                owned[prometheus.DATASOURCE_FILE] = prometheus.dump(prometheus.datasource_provisioning(self.ctx.env))
        return owned

    def _delete(self, action: Action) -> ApplyOutcome:
        from dashboards import prometheus

        files = self._files()
        uid = dashboard_uid(action.name)
        rules = prometheus.rules_path(self.root, action.name)
        if self.grafana.url:
            self._call_grafana(lambda p: p.delete(uid))
            rules.unlink(missing_ok=True)
            return ApplyOutcome(f"deleted {uid} from Grafana {self.grafana.url} and its alert rules")
        rules.unlink(missing_ok=True)
        files.remove_dashboard(action.name)
        return ApplyOutcome(f"deleted {uid} and its alert rules")

    def _call_grafana(self, call: Callable[[GrafanaPublisher], T]) -> T:
        """Run one publisher call; Grafana's failures become ApplyErrors (transient when retrying may help)."""
        from daemon.shared.secrets import SecretNotFound
        from dashboards.grafana_api import GrafanaRefused, GrafanaUnavailable

        try:
            return call(self._grafana())
        except GrafanaUnavailable as exc:
            raise ApplyError(str(exc), transient=True) from None
        except (GrafanaRefused, SecretNotFound) as exc:
            raise ApplyError(str(exc).strip('"')) from None

    # ------------------------------------------------------------------ describe
    def describe(self, action: Action, resource: Resource | None, live: Observed | None = None) -> str:
        op = action.op
        target = f"Grafana folder {self.grafana.folder!r}" if self.grafana.url else "provisioning files"
        if op == Op.DELETE:
            return f"remove dashboard {dashboard_uid(action.name)} and its alert rules from {target}"
        if resource is None:
            return ""
        # counted from the normalised data (the same lists as the model's): a plan reads no dashboard model
        data = resource.data
        panels = len(data["panels"]) + sum(len(row["panels"]) for row in data["rows"])
        what = f"{panels} panels, {len(data['alerts'])} alerts"
        if data["scrape"]:
            what += f", scrape config for {sum(len(t['targets']) for t in data['scrape'])} targets"
        if op == Op.RESTORE:
            return f"re-publish the dashboard of {action.restore_from} ({what}) to {target}"
        return f"publish {what} to {target}"

    # ------------------------------------------------------------------ helpers
    def _files(self) -> FileStore:
        from dashboards.files import FileStore

        return FileStore(self.root, self.grafana.folder)

    def _grafana(self) -> GrafanaPublisher:
        if self._publisher is None:
            from daemon.shared.secrets import resolve_secret
            from dashboards.grafana_api import GrafanaPublisher

            if not self.grafana.token:
                raise ApplyError("env.grafana.url is set but env.grafana.token (${secret:NAME}) is not")
            token = resolve_secret(self.grafana.token)
            self._publisher = GrafanaPublisher(
                self.grafana.url or "",
                token,
                self.grafana.folder,
                timeout_s=self.grafana.timeout_s,
                retries=self.grafana.retries,
                backoff_s=self.grafana.retry_backoff_s,
            )
        return self._publisher
