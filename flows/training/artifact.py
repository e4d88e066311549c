"""Model artifacts in the BentoML store: save a trained candidate, load it back as a CPU `Predictor`.

One BentoML model per trained candidate, tag `<model>:<candidate>-<candidate_fp[:16]>` (the version is
the content fingerprint, so the same spec + data + code never trains twice), framework-neutral
directory: `weights.pt` (state_dict of a `flows.training.networks` network), `config.json` (network,
task, classes, feature schema, fitted preprocessing, sha256 of the weights), BentoML's `model.yaml`
(labels `specd.*`, metrics in metadata) and `specd-decisions.json` (promotion decision per model
fingerprint, written by the adapter).

BentoML's store copies into the final directory non-atomically; a kill -9 mid-copy leaves a directory
without the weights or with a torn file. `artifact_complete` checks the weights hash recorded in the
config, and `save_model` replaces an incomplete directory, so a re-run converges.

For other areas' tests: `make_test_model(model, candidate, features=...)` saves a small real model
(fitted preprocessing + a deterministic linear network) and returns its tag; `load_predictor(tag)` then
serves it. Both honour `root=` (a BentoML home) or else `$BENTOML_HOME` / `$SPECD_HOME/bentoml`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.training.registry import atomic_write_json, store_root

if TYPE_CHECKING:  # numpy and the preprocessing code load only when a model is saved or used:
    import numpy as np  # `plan` reads the store through this module (artifact_complete)

FORMAT = "specd-tabular/1"
WEIGHTS, CONFIG, DECISIONS = "weights.pt", "config.json", "specd-decisions.json"


def candidate_tag(model: str, candidate: str, candidate_fp: str) -> str:
    return f"{model}:{candidate}-{candidate_fp[:16]}"


def model_dir(tag: str, root: str | os.PathLike | None = None) -> Path:
    name, _, version = tag.partition(":")
    if not name or not version:
        raise ValueError(f"model tag {tag!r} must be name:version")
    return store_root(root) / "models" / name / version


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_complete(tag: str, root: str | os.PathLike | None = None) -> bool:
    """True when the stored model is whole: model.yaml, config and weights matching their recorded hash."""
    directory = model_dir(tag, root)
    try:
        config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
        return (directory / "model.yaml").is_file() and _sha256(directory / WEIGHTS) == config.get("weights_sha256")
    except (OSError, ValueError):
        return False


def read_model_info(tag: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Labels, metadata and decisions of a stored model, read from its files (no bentoml import)."""
    import yaml

    directory = model_dir(tag, root)
    info = yaml.safe_load((directory / "model.yaml").read_text(encoding="utf-8")) or {}
    try:
        decisions = json.loads((directory / DECISIONS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        decisions = {}
    return {"tag": tag, "labels": info.get("labels") or {}, "metadata": info.get("metadata") or {},
            "creation_time": str(info.get("creation_time", "")), "decisions": decisions}


def record_decision(tag: str, model_fingerprint: str, decision: str, root: str | os.PathLike | None = None) -> None:
    """Append the promotion decision taken for this model at one model fingerprint (atomic rewrite)."""
    path = model_dir(tag, root) / DECISIONS
    try:
        decisions = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        decisions = {}
    if decisions.get(model_fingerprint) != decision:
        decisions[model_fingerprint] = decision
        atomic_write_json(path, decisions)


def _bentoml_safe(value: Any) -> Any:
    """BentoML metadata takes basic types only: drop None, stringify the rest of the unknowns."""
    if isinstance(value, Mapping):
        return {str(k): _bentoml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_bentoml_safe(v) for v in value if v is not None]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def save_model(
    tag: str,
    *,
    state_dict: Mapping[str, Any],
    config: Mapping[str, Any],
    labels: Mapping[str, str],
    metadata: Mapping[str, Any] | None = None,
    root: str | os.PathLike | None = None,
) -> str:
    """Store one candidate. `config` needs network, network_params, task, target, classes, feature_schema,
    preprocessing (from `preprocess.fit`). Idempotent: an existing complete model is kept as is."""
    import bentoml
    import torch
    from bentoml._internal.models.model import ModelStore

    if artifact_complete(tag, root):
        return tag
    directory = model_dir(tag, root)
    if directory.exists():
        shutil.rmtree(directory)  # left over from a crash mid-copy
    store = ModelStore(str(store_root(root) / "models"))
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / WEIGHTS
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, weights)
        full_config = {"format": FORMAT, **config, "weights_sha256": _sha256(weights)}
        with bentoml.models.create(
            tag, labels={k: str(v) for k, v in labels.items()}, metadata=_bentoml_safe(dict(metadata or {})), _model_store=store
        ) as model:
            shutil.copyfile(weights, Path(model.path) / WEIGHTS)
            (Path(model.path) / CONFIG).write_text(json.dumps(full_config, indent=2), encoding="utf-8")  # keeps feature order
    return tag


@dataclass
class Predictor:
    """A stored candidate ready to predict on CPU: fitted preprocessing + network."""

    tag: str
    config: dict[str, Any]
    network: Any  # torch.nn.Module in eval mode
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def feature_schema(self) -> dict[str, str]:
        """Ordered {column: "float64" | "int64" | "string"} the service validates requests against."""
        return dict(self.config["feature_schema"])

    @property
    def task(self) -> str:
        return self.config["task"]

    def transform(self, columns: Mapping[str, Any]) -> np.ndarray:
        from flows.training import preprocess

        return preprocess.transform(self.config["preprocessing"], columns)

    def predict(self, columns: Mapping[str, Any]) -> dict[str, list]:
        """{"prediction": [...]} plus {"probability": [...]} for classification (binary: P(positive
        class); multiclass: per-class lists in the order of `config["classes"]`)."""
        import torch

        matrix = self.transform(columns)
        with torch.inference_mode():
            output = self.network(torch.from_numpy(matrix)).float()
        task, classes = self.config["task"], self.config.get("classes") or []
        if task == "regression":
            mean, std = self.config.get("target_scale", [0.0, 1.0])
            return {"prediction": (output[:, 0] * std + mean).tolist()}
        if task == "binary":
            positive = torch.sigmoid(output[:, 0]).double().numpy()
            if self.config.get("calibration"):  # the model's declared calibration step (flows/training/calibration.py)
                from flows.training.calibration import apply

                positive = apply(self.config["calibration"], positive)
            prediction = [classes[1] if p >= 0.5 else classes[0] for p in positive.tolist()]
            return {"prediction": prediction, "probability": positive.tolist()}
        probability = torch.softmax(output, dim=1)
        prediction = [classes[i] for i in probability.argmax(dim=1).tolist()]
        return {"prediction": prediction, "probability": probability.tolist()}


def load_predictor(tag: str, root: str | os.PathLike | None = None) -> Predictor:
    """Load a stored candidate on CPU (torch only; no Lightning, no bentoml import)."""
    import torch
    import yaml

    from flows.training.networks import build_network

    directory = model_dir(tag, root)
    if not artifact_complete(tag, root):
        raise FileNotFoundError(f"model {tag} is missing or incomplete in {directory.parent.parent}")
    config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    network = build_network(config["network"], config["input_dim"], config["output_dim"], config.get("network_params", {}))
    network.load_state_dict(torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True))
    network.eval()
    info = yaml.safe_load((directory / "model.yaml").read_text(encoding="utf-8")) or {}
    return Predictor(tag, config, network, dict(info.get("labels") or {}))


def make_test_model(
    model: str,
    candidate: str,
    *,
    features: Mapping[str, str] | None = None,
    task: str = "binary",
    seed: int = 0,
    root: str | os.PathLike | None = None,
    classes: list[Any] | None = None,
) -> str:
    """Save a small real model for tests of other areas (e.g. services) and return its tag.

    Preprocessing is fitted on seeded synthetic columns; the network is a linear layer with seeded
    weights, so two seeds give two models that disagree. `features` defaults to a mix of float, int and
    string columns like the penguin example.
    """
    import numpy as np
    import torch

    from flows.training import preprocess
    from flows.training.networks import build_network

    features = dict(features or {"bill_length_mm": "float64", "flipper_length_mm": "float64", "year": "int64", "island": "string"})
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for name, dtype in features.items():
        if dtype == "string":
            columns[name] = [f"v{int(i)}" for i in rng.integers(0, 3, size=64)]
        else:
            columns[name] = rng.normal(size=64) if dtype == "float64" else rng.integers(2007, 2010, size=64)
    options = {name: {} for name in features}
    state = preprocess.fit(columns, features, options)
    classes = classes or ([0, 1] if task == "binary" else ["a", "b", "c"] if task == "multiclass" else None)
    output_dim = 1 if task in ("binary", "regression") else len(classes or [])
    torch.manual_seed(seed)
    network = build_network("Linear", state["output_dim"], output_dim, {})
    fingerprint = hashlib.sha256(f"{model}/{candidate}/{seed}/{task}/{sorted(features.items())}".encode()).hexdigest()
    tag = candidate_tag(model, candidate, fingerprint)
    config = {"network": "Linear", "network_params": {}, "input_dim": state["output_dim"], "output_dim": output_dim,
              "task": task, "target": "target", "classes": classes, "feature_schema": features,
              "preprocessing": state, "target_scale": [0.0, 1.0]}
    labels = {"specd.model": model, "specd.candidate": candidate, "specd.fingerprint": fingerprint,
              "specd.git_sha": "test", "specd.table": "test", "specd.delta_version": "0"}
    return save_model(tag, state_dict=network.state_dict(), config=config, labels=labels,
                      metadata={"metrics": {}}, root=root)
