"""The `manifests` kind: a service's Kubernetes manifests, written where Argo CD or Flux picks them up.

specd does not talk to clusters: the live system of this kind is the manifests directory
(`env.deploy.manifests_dir`, relative: under the state home), one folder `<namespace>/<service>/` per
resource, one YAML file per object. Observe reads the fingerprint and the rendered input back from the
routing ConfigMap (`specd-resource.json`), re-renders them (pure) and reports any file that differs —
edited by hand, or left half-written by a crash — as drift; apply writes every file atomically, removes
files it no longer renders, and writes the ConfigMap last, so a kill -9 at any point is observed as
out of sync and the next apply finishes the job. Delete (prune) removes the folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from daemon.adapters.base import AdapterContext
from daemon.core.manifests import FINGERPRINT_ANNOTATION, SHA_ANNOTATION, directory_of, k8s_name, render, render_files
from daemon.core.plan import Op
from daemon.core.state import DEGRADED, HEALTHY, ApplyOutcome, Observed
from daemon.shared.errors import SpecIssue
from daemon.shared.fsio import atomic_write_text, fsync_dir
from daemon.shared.images import with_built_image

if TYPE_CHECKING:
    from daemon.core.graph import Graph, Resource
    from daemon.core.plan import Action

RESOURCE_KEY = "specd-resource.json"  # in the routing ConfigMap: the rendered input, for observe
# Validation results by the resource's data: the fingerprint and sha only change label and annotation
# values, so a daemon cycle or a warm plan re-validates only the services that changed (bounded).
_CHECKED: dict[str, list[tuple[str, str]]] = {}
_CHECKED_MAX = 10_000


def manifests_root(ctx: AdapterContext) -> Path:
    root = Path(ctx.env.deploy.manifests_dir)
    return root if root.is_absolute() else ctx.home / root


def with_resource(files: dict[str, str], objects: dict[str, dict[str, Any]], data: Any) -> dict[str, str]:
    """The files with the rendered input added to the routing ConfigMap (what observe reads back)."""
    from daemon.core.manifests import to_yaml

    out = dict(files)
    for name, obj in objects.items():
        if obj["kind"] == "ConfigMap":
            obj = {**obj, "data": {**obj["data"], RESOURCE_KEY: json.dumps(data, sort_keys=True, indent=1)}}
            out[name] = to_yaml(obj)
    return out


def files_for(data: Any, fingerprint: str, revision: str) -> dict[str, str]:
    return with_resource(render_files(data, fingerprint, revision), render(data, fingerprint, revision), data)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ManifestsAdapter:
    kind = "manifests"

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx
        self.root = manifests_root(ctx)

    # ---- observe -------------------------------------------------------------------------------------
    def _live_folders(self) -> dict[str, Path]:
        """service name -> folder, for every folder that holds a specd routing ConfigMap."""
        out: dict[str, Path] = {}
        if not self.root.is_dir():
            return out
        for config in sorted(self.root.glob("*/*/configmap-*-routing.yaml")):
            try:
                obj = yaml.safe_load(config.read_text())
                data = json.loads(obj["data"][RESOURCE_KEY])
                out[data["service"]] = config.parent
            except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
                continue
        return out

    def observe(self, resources: Sequence[Resource]) -> dict[str, Observed]:
        desired = {r.name: r for r in resources if r.kind == self.kind}
        live = self._live_folders()
        out: dict[str, Observed] = {}
        for name in sorted(set(desired) | set(live)):
            resource = desired.get(name)
            folder = live.get(name) or (self.root / directory_of(resource.data) if resource is not None else None)
            out[f"{self.kind}/{name}"] = self._observe_folder(folder, resource)
        return out

    def _observe_folder(self, folder: Path | None, resource: Resource | None) -> Observed:
        if folder is None or not folder.is_dir():
            return Observed(False)
        present = {p.name: p.read_text() for p in sorted(folder.glob("*.yaml"))}
        config = next((text for name, text in present.items() if name.startswith("configmap-") and name.endswith("-routing.yaml")), None)
        try:
            obj = yaml.safe_load(config) if config else None
            data = json.loads(obj["data"][RESOURCE_KEY])
            fingerprint = obj["metadata"]["annotations"][FINGERPRINT_ANNOTATION]
            revision = obj["metadata"]["annotations"][SHA_ANNOTATION]
        except (yaml.YAMLError, KeyError, TypeError, ValueError):
            return Observed(True, None, None, DEGRADED, "no readable routing ConfigMap", drift=("manifests unreadable",),
                            details={"files": {n: _digest(t) for n, t in present.items()}})
        expected = files_for(data, fingerprint, revision)
        drift = []
        changed = sorted(n for n in expected if present.get(n) != expected[n])
        extra = sorted(set(present) - set(expected))
        if changed:
            drift.append(f"manifests differ from their render (edited by hand or half-written): {', '.join(changed)}")
        if extra:
            drift.append(f"files specd did not render: {', '.join(extra)}")
        if resource is not None and (image := with_built_image(resource.data, self.ctx.home)["image"]) != data.get("image"):
            drift.append(f"image {data.get('image')} → {image} (built for this service version)")
        details = {"spec": data, "folder": str(folder), "files": {n: _digest(t) for n, t in present.items()}}
        return Observed(True, fingerprint, revision, DEGRADED if drift else HEALTHY,
                        f"{len(present)} manifests in {folder}", prune=data.get("prune"), details=details, drift=tuple(drift))

    # ---- plan ----------------------------------------------------------------------------------------
    def describe(self, action: Action, resource: Resource | None, live: Observed | None = None) -> str:
        if resource is None:
            return f"remove the manifests folder {live.details.get('folder') if live else ''}".rstrip()
        data = with_built_image(resource.data, self.ctx.home)
        objects = render(data, action.fingerprint or "", self.ctx.revision)
        kinds = Counter(obj["kind"] for obj in objects.values())
        what = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in sorted(kinds.items()))
        split = " / ".join(f"{v['name']} {v['weight']}" for v in resource.data["variants"])
        text = f"write {len(objects)} manifests ({what}) to {self.ctx.env.deploy.manifests_dir}/{directory_of(resource.data)}; HTTPRoute weights {split} (per mille)"
        before = (live.details.get("files") if live else None) or {}
        if before:
            after = {n: _digest(t) for n, t in files_for(data, action.fingerprint or "", self.ctx.revision).items()}
            added = sorted(set(after) - set(before))
            removed = sorted(set(before) - set(after))
            text += f"; {len(added)} new, {len(removed)} removed file(s)" if added or removed else ""
        return text

    def check(self, resources: Sequence[Resource], graph: Graph) -> list[SpecIssue]:
        """Every rendered manifest against the pinned Kubernetes schemas of each `kubernetes_versions`."""
        resources = [r for r in resources if r.kind == self.kind]
        if not resources:  # no Kubernetes target: the schemas (built as they are imported) stay unimported
            return []
        from daemon.adapters.k8s_schemas import validate_files

        issues: list[SpecIssue] = []
        for resource in resources:
            data = with_built_image(resource.data, self.ctx.home)
            key = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
            problems = _CHECKED.get(key)
            if problems is None:
                objects = render(data, resource.fingerprint, self.ctx.revision)
                problems = validate_files(objects, resource.data["kubernetes_versions"])
                if len(_CHECKED) >= _CHECKED_MAX:
                    _CHECKED.clear()
                _CHECKED[key] = problems
            for name, problem in problems:
                issues.append(SpecIssue(resource.path, self._line(resource.path), "deploy", f"rendered {name}: {problem}"))
        return issues

    def _line(self, path: str) -> int:
        from daemon.core.yamlpos import line_for, parse_with_lines

        try:
            _, lines = parse_with_lines((self.ctx.repo_dir / path).read_text())
        except Exception:
            return 0
        return line_for(lines, ("deploy",))

    # ---- apply ---------------------------------------------------------------------------------------
    def apply(self, action: Action, resource: Resource | None) -> ApplyOutcome:
        if action.op == Op.DELETE or resource is None:
            folder = self._live_folders().get(action.name)
            if folder is not None:
                shutil.rmtree(folder)
                fsync_dir(folder.parent)
            return ApplyOutcome(f"removed the manifests of {action.name}")
        folder = self.root / directory_of(resource.data)
        old = self._live_folders().get(resource.name)
        folder.mkdir(parents=True, exist_ok=True)
        data = with_built_image(resource.data, self.ctx.home)  # the image built for this service version, if any
        files = files_for(data, resource.fingerprint, self.ctx.revision)
        config = next(n for n in files if n.startswith("configmap-") and n.endswith("-routing.yaml"))
        for name, text in files.items():  # the ConfigMap (the fingerprint observe reads) goes last
            if name != config:
                atomic_write_text(folder / name, text, mode=0o644)
        for stale in sorted(set(p.name for p in folder.glob("*.yaml")) - set(files)):
            (folder / stale).unlink()
        atomic_write_text(folder / config, files[config], mode=0o644)
        fsync_dir(folder)
        if old is not None and old != folder:  # moved to another namespace
            shutil.rmtree(old, ignore_errors=True)
        return ApplyOutcome(f"wrote {len(files)} manifests of {k8s_name(resource.name)} to {folder} (image {data['image']})",
                            details={"folder": str(folder), "files": sorted(files), "image": data["image"]})
