"""Desired routing of a service spec: resolve roles to model tags, secrets to digests, paths to URIs.

Runs at apply time in the daemon (import-light: registry JSON files, no torch, no bentoml). A role is
resolved against the model's *current release*, which the models adapter sets before services apply
(and sets back on a `git revert`): that is how a rollback reaches the service without a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bentos.routing import Routing, Variant, key_digest
from daemon.schema.service import ServiceSpec, VariantSpec


def candidate_of(tag: str) -> str:
    """`<model>:<candidate>-<fp16>` → candidate name."""
    version = tag.partition(":")[2]
    return version.rsplit("-", 1)[0] if "-" in version else version


def resolve_variant(variant: VariantSpec, release: Any, model: str) -> str | None:
    """The model tag a variant serves, or None when the release has no such model (e.g. no challenger)."""
    if variant.version is not None:
        return variant.version
    if release is None:
        raise LookupError(f"model {model!r} has no current release yet (train it first)")
    if variant.role == "champion":
        if release.champion is None:
            raise LookupError(f"model {model!r} has no champion in its current release ({release.decision})")
        return release.champion
    if variant.candidate is not None:
        for tag in release.challengers:
            if candidate_of(tag) == variant.candidate:
                return tag
        return None
    return release.challengers[0] if release.challengers else None


def build_routing(
    name: str,
    spec: ServiceSpec,
    *,
    fingerprint: str,
    revision: str,
    store: Path,
    storage_root: str,
    storage_options: dict[str, str] | None = None,
    online_store: dict[str, Any] | None = None,
    access: Any = None,
    tls: dict[str, Any] | None = None,
) -> tuple[Routing, list[str]]:
    from daemon.shared.secrets import resolve_secret
    from flows.training.artifact import artifact_complete
    from flows.training.registry import current_release

    release = current_release(spec.model, root=store) if any(v.role for v in spec.variants) else None
    notes: list[str] = []
    resolved: list[tuple[VariantSpec, str | None]] = []
    for variant in spec.variants:
        tag = resolve_variant(variant, release, spec.model)
        if tag is None:
            notes.append(f"variant {variant.name}: no {variant.candidate or 'challenger'} in the current release, weight 0")
        elif not artifact_complete(tag, root=store):
            raise FileNotFoundError(f"variant {variant.name}: model {tag} is missing or incomplete in the model store")
        resolved.append((variant, tag))
    total = sum(v.weight for v, tag in resolved if tag is not None)
    if total <= 0:
        raise ValueError("no variant with a positive weight can be served")
    champion_tag = next((tag for v, tag in resolved if v.role == "champion"), None)
    variants = tuple(
        Variant(v.name, tag or champion_tag or next(t for _, t in resolved if t), (v.weight / total) if tag else 0.0, v.role)
        for v, tag in resolved
    )
    base = storage_root.rstrip("/")
    settings: dict[str, Any] = {
        "batching": spec.batching.model_dump(),
        "max_request_rows": spec.max_request_rows,
        "slo": spec.slo.model_dump(),
        "prune": spec.prune,
        "auth": {
            "required": spec.auth.required,
            "header": spec.auth.header,
            "key_sha256": sorted(key_digest(resolve_secret(ref)) for ref in spec.auth.api_keys),
        },
        "prediction_log": {
            **spec.prediction_log.model_dump(),
            "predictions_uri": f"{base}/predictions/{name}",
            "feedback_uri": f"{base}/feedback/{name}",
            "storage_options": dict(storage_options or {}),  # secret refs stay refs; the service resolves them
        },
    }
    if tls and storage_options:  # the environment's tls (references): the logs' object-store client verifies with its CA
        settings["prediction_log"]["tls"] = dict(tls)
    if access is not None:  # the policy's texts and the digests of its API keys (never a key itself)
        settings["access"] = access.to_settings(resolve_secret)
    if spec.features_from is not None and online_store is not None:  # secret refs stay refs; the service resolves them
        settings["features_from"] = {**spec.features_from.model_dump(), "store": online_store}
    routing = Routing(name, fingerprint, revision, spec.model, variants, spec.routing.sticky_field, spec.routing.sticky_header, settings)
    return routing, notes
