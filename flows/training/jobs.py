"""Training jobs as plain data: what one candidate process needs, and the candidate fingerprint.

Pure and import-light (the adapter builds jobs inside the daemon). A candidate's fingerprint covers
exactly what determines its weights — data selection, task, split, resolved candidate config, the
pinned Delta version and the training code version — and *not* the other candidates, the promotion
rule or the sensitive attributes. So adding challenger `c` to a spec trains only `c`; `a` and `b` are
reused from the store and only re-scored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flows.training.artifact import candidate_tag

# Bump when the training loop's output for the same job changes (part of every candidate fingerprint).
TRAINING_CODE_VERSION = "train/3"  # 2: time splits never straddle a tie; group/time-aware CV folds; 3: rows in canonical order before the split


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def candidate_fingerprint(
    *, data: Mapping[str, Any], task: str, split: Mapping[str, Any], config: Mapping[str, Any],
    table_uri: str, delta_version: int | None, data_id: str | None, code_version: str,
) -> str:
    material = {"data": data, "task": task, "split": split, "config": config, "table_uri": table_uri,
                "delta_version": delta_version, "data_id": data_id, "code": [code_version, TRAINING_CODE_VERSION]}
    return hashlib.sha256(_canonical(material).encode()).hexdigest()


def labels_for(model: str, candidate: str, candidate_fp: str, model_fp: str, git_sha: str, table: str,
               delta_version: int | None) -> dict[str, str]:
    return {"specd.model": model, "specd.candidate": candidate, "specd.fingerprint": candidate_fp,
            "specd.model_fingerprint": model_fp, "specd.git_sha": git_sha, "specd.table": table,
            "specd.delta_version": "" if delta_version is None else str(delta_version)}


def train_job(
    *, model: str, candidate: str, candidate_fp: str, model_fp: str, git_sha: str, spec_data: Mapping[str, Any],
    features: Sequence[str], table_uri: str, delta_version: int | None, data_id: str | None,
    storage_options: Mapping[str, str], config: Mapping[str, Any], resources: Mapping[str, Any],
    store_root: str, work_dir: Path, tensorboard_dir: str, code_version: str,
) -> dict[str, Any]:
    tag = candidate_tag(model, candidate, candidate_fp)
    lineage = {"model": model, "candidate": candidate, "candidate_fingerprint": candidate_fp,
               "model_fingerprint": model_fp, "git_sha": git_sha, "table": spec_data["data"]["table"],
               "table_uri": table_uri, "delta_version": delta_version, "data_id": data_id,
               "code_version": [code_version, TRAINING_CODE_VERSION], "config": config,
               "features": list(features), "split": spec_data["split"]}
    return {
        "mode": "train", "model": model, "candidate": candidate, "tag": tag, "model_fingerprint": model_fp,
        "data": {"table": spec_data["data"]["table"], "uri": table_uri, "version": delta_version,
                 "storage_options": dict(storage_options), "target": spec_data["data"]["target"], "features": list(features)},
        "task": spec_data["task"], "split": spec_data["split"],
        "sensitive_attributes": list(spec_data.get("sensitive_attributes", [])),
        "config": dict(config), "resources": dict(resources), "store_root": store_root,
        "tensorboard_dir": tensorboard_dir, "result_path": str(work_dir / f"result-{candidate}-{candidate_fp[:16]}.json"),
        "labels": labels_for(model, candidate, candidate_fp, model_fp, git_sha, spec_data["data"]["table"], delta_version),
        "lineage": lineage,
    }


def evaluate_job(base: Mapping[str, Any], tags: Sequence[str], work_dir: Path, model_fp: str) -> dict[str, Any]:
    """Re-score stored models on the same data/split as `base` (a train job of this apply)."""
    return {**{k: base[k] for k in ("model", "data", "task", "split", "sensitive_attributes", "store_root")},
            "mode": "evaluate", "evaluate_tags": list(tags), "result_path": str(work_dir / f"evaluate-{model_fp[:16]}.json")}
