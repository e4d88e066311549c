"""Training/serving consistency: can the online store feed the models a service routes to?

A model's lineage records the table and Delta version it was trained on (BentoML labels `specd.table`,
`specd.delta_version`) and its feature schema (name → float64 | int64 | string, in the artifact's
config). The store records the schema of what it materialised (meta hash). If a model needs a feature
the store lacks, or holds in another type, serving by key would predict on wrong inputs: the services
adapter reports the service Degraded with this reason and the service itself answers 503.

Light: redis and JSON files only (no torch, no bentoml).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.online import M_SCHEMA, M_VERSION, meta_key, schema_mismatch


def model_feature_schema(tag: str, store: str | Path | None = None) -> dict[str, str]:
    from flows.training.artifact import CONFIG, model_dir

    config = json.loads((model_dir(tag, store) / CONFIG).read_text(encoding="utf-8"))
    return dict(config.get("feature_schema") or {})


def serving_problem(settings: dict[str, Any], table: str, tags: list[str], store: str | Path | None = None) -> str | None:
    """Why the store cannot serve these models' features (None: it can). Store down is not reported
    here (requests by key get a 503 naming it; full-feature requests still work)."""
    from flows.online.store import connect

    try:
        meta = connect(settings, timeout_s=0.5).hmget(meta_key(settings["prefix"], table), [M_SCHEMA, M_VERSION])
    except Exception:
        return None
    if meta[0] is None:
        return None  # not materialised yet: the online resource's own status says so
    stored = json.loads(meta[0])
    for tag in tags:
        try:
            needed = model_feature_schema(tag, store)
        except (OSError, ValueError):
            continue
        problems = schema_mismatch(stored, needed)
        if problems:
            version = meta[1].decode() if isinstance(meta[1], bytes) else meta[1]
            return f"online store (table {table} v{version}) does not match model {tag}: {'; '.join(problems)}"
    return None
