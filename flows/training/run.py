"""Training entry point: `python -m flows.training.run <job.json>` — one candidate per process.

Its own process so that Lightning's DDP launcher (which re-executes the launching command per rank) and
any crash stay out of the daemon and its Prefect flow run; torchrun-compatible (`torchrun --nproc_per_node
N -m flows.training.run job.json`). Modes:

- `train`: read the pinned Delta version, split, fit preprocessing on the training rows, train with
  Lightning (optionally k folds first for cross-validation), evaluate on the holdout, save the artifact
  to the BentoML store (rank 0) and write `result_path` atomically.
- `evaluate`: re-score stored models (the champion, reused candidates) on the same holdout.

Results: {"status": trained|reused|diverged|failed, "tag", "metrics", "cv", "message", ...}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from flows.training import calibration, fused, multinode, preprocess
from flows.training import data as datapath
from flows.training.metrics import calibration as calibration_curve
from flows.training.metrics import evaluate
from flows.training.registry import atomic_write_json


def _prep_options(config: dict[str, Any], schema: dict[str, str]) -> dict[str, dict[str, Any]]:
    prep = config["preprocessing"]
    options = {}
    for name, dtype in schema.items():
        base = dict(prep["numeric"] if dtype in preprocess.NUMERIC_TYPES else prep["categorical"])
        base.update({k: v for k, v in (prep.get("columns", {}).get(name) or {}).items() if v is not None})
        options[name] = base
    return options


class Prepared:
    """The table at the pinned version, split once, with the feature schema and target classes."""

    def __init__(self, job: dict[str, Any]):
        source = job["data"]
        self.task, self.target = job["task"], source["target"]
        self.features: list[str] = list(source["features"])
        self.sensitive: list[str] = list(job.get("sensitive_attributes", []))
        split = job["split"]
        needed = self.features + [self.target] + self.sensitive + ([split["column"]] if split.get("column") else [])
        frame = datapath.read_table(source["uri"], source.get("version"), needed, source.get("storage_options"))
        self.frame = frame.filter(frame[self.target].is_not_null())
        self.schema = {name: datapath.schema_type(str(self.frame.schema[name])) or "string" for name in self.features}
        self.classes = datapath.target_classes(self.frame, self.target, self.task)
        self.split = datapath.make_split(self.frame, split)

    def columns(self, rows: np.ndarray) -> dict[str, Any]:
        return datapath.columns_at(self.frame, self.features, rows)

    def targets(self, rows: np.ndarray) -> np.ndarray:
        values = self.frame[self.target][rows].to_list()
        return preprocess.encode_target(values, self.task, self.classes)

    def groups(self, rows: np.ndarray) -> dict[str, list]:
        return {a: self.frame[a][rows].to_list() for a in self.sensitive}


def _outputs(network: Any, matrix: np.ndarray, task: str, target_scale: tuple[float, float]) -> np.ndarray:
    import torch

    network.eval()
    with torch.inference_mode():
        raw = network(torch.from_numpy(matrix).to(next(network.parameters()).device)).float().cpu()
    if task == "binary":
        return torch.sigmoid(raw[:, 0]).numpy().astype(np.float64)
    if task == "multiclass":
        return torch.softmax(raw, dim=1).numpy().astype(np.float64)
    return (raw[:, 0].numpy() * target_scale[1] + target_scale[0]).astype(np.float64)


def _truth(prepared: Prepared, rows: np.ndarray) -> np.ndarray:
    return prepared.targets(rows).astype(np.float64 if prepared.task == "regression" else np.int64)


def fit_once(job: dict[str, Any], prepared: Prepared, train_rows: np.ndarray, log_name: str | None,
             validation_rows: np.ndarray | None = None) -> dict[str, Any]:
    """Fit preprocessing on `train_rows` and train one model. Returns the pieces the artifact needs. With a
    TensorBoard log, `validation_rows` are scored after every epoch (`val/*` curves)."""
    import lightning.pytorch as pl
    import torch

    from flows.training.models import MODULES

    config, resources = job["config"], job.get("resources", {})
    trainer_cfg = config["trainer"]
    state, matrix = fused.fit_transform(prepared.columns(train_rows), prepared.schema, _prep_options(config, prepared.schema))
    features = torch.from_numpy(matrix)
    targets = torch.from_numpy(prepared.targets(train_rows))
    target_scale = (0.0, 1.0)
    if prepared.task == "regression":
        target_scale = (float(targets.mean()), float(targets.std()) or 1.0)
        targets = (targets - target_scale[0]) / target_scale[1]
    output_dim = len(prepared.classes) if prepared.task == "multiclass" else 1
    pl.seed_everything(int(trainer_cfg["seed"]), workers=True, verbose=False)
    params = {k: v for k, v in config["model"].items() if k != "_target_"}
    target = config["model"]["_target_"]
    cls = MODULES.get(target)
    if not (isinstance(cls, type) and issubclass(cls, pl.LightningModule) and f"{cls.__module__}.{cls.__name__}" == target):
        raise ValueError(f"model._target_ {target!r} is not an allowlisted LightningModule defined in its module")
    module = cls(state["output_dim"], output_dim, prepared.task, config["optim"], **params)
    module.train_data, module.batch_size, module.seed = (features, targets), int(trainer_cfg["batch_size"]), int(trainer_cfg["seed"])
    logger: Any = False
    callbacks: list[Any] = []
    if log_name and job.get("tensorboard_dir"):
        from lightning.pytorch.loggers import TensorBoardLogger

        from flows.training.tensorboard import ValidationCurves

        logger = TensorBoardLogger(job["tensorboard_dir"], name=job["model"], version=log_name, default_hp_metric=False)
        if validation_rows is not None and validation_rows.size:
            matrix, truth = fused.transform(state, prepared.columns(validation_rows)), _truth(prepared, validation_rows)
            callbacks.append(ValidationCurves(lambda net: evaluate(prepared.task, truth, _outputs(net, matrix, prepared.task, target_scale))))
    trainer = pl.Trainer(
        accelerator=resources.get("accelerator", "cpu"), devices=resources.get("devices", 1),
        num_nodes=int(resources.get("num_nodes", 1)), precision=resources.get("precision", "32-true"),
        strategy=resources.get("strategy", "auto"), max_epochs=int(trainer_cfg["epochs"]), logger=logger, callbacks=callbacks,
        deterministic=bool(trainer_cfg.get("deterministic", True)), enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
        gradient_clip_val=trainer_cfg.get("gradient_clip"), log_every_n_steps=50, num_sanity_val_steps=0,
    )
    started = time.perf_counter()
    trainer.fit(module)
    elapsed = time.perf_counter() - started
    samples = len(module.epoch_losses) * features.shape[0]
    return {"module": module, "trainer": trainer, "state": state, "target_scale": target_scale, "logger": logger,
            "diverged": module.diverged, "seconds": elapsed, "samples_per_s": samples / elapsed if elapsed else 0.0,
            "final_loss": module.epoch_losses[-1] if module.epoch_losses else None}


def _score(fitted: dict[str, Any], prepared: Prepared, rows: np.ndarray, with_groups: bool) -> dict[str, Any]:
    matrix = fused.transform(fitted["state"], prepared.columns(rows))
    output = _outputs(fitted["module"].net, matrix, prepared.task, fitted["target_scale"])
    if not np.all(np.isfinite(output)):
        raise FloatingPointError("non-finite predictions")
    return _calibrated_metrics(prepared.task, _truth(prepared, rows), output, prepared.groups(rows) if with_groups else None,
                               fitted.get("calibrator"))


def _calibrated_metrics(task: str, y: np.ndarray, output: np.ndarray, groups: Any, calibrator: dict[str, Any] | None) -> dict[str, Any]:
    """The metrics of what serves: with a calibrator, of the calibrated probabilities, plus the raw ECE beside them."""
    if not calibrator or task != "binary":
        return evaluate(task, y, output, groups)
    metrics = evaluate(task, y, calibration.apply(calibrator, output), groups)
    metrics["ece_uncalibrated"] = calibration_curve(y, output)[1]
    metrics["calibration_method"] = calibrator["method"]
    return metrics


def _cv_summary(fold_metrics: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"folds": len(fold_metrics)}
    for name in fold_metrics[0] if fold_metrics else []:
        values = [m[name] for m in fold_metrics if isinstance(m.get(name), int | float)]
        if len(values) == len(fold_metrics) and name != "rows":
            summary[name] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return summary


def train(job: dict[str, Any]) -> dict[str, Any] | None:
    """Train one candidate; returns the result on global rank 0, None on other ranks."""
    from flows.training.artifact import save_model

    prepared = Prepared(job)
    result: dict[str, Any] = {"candidate": job["candidate"], "tag": job["tag"], "delta_version": job["data"].get("version")}
    fold_metrics = []
    for index, (fit_rows, validate_rows) in enumerate(prepared.split.folds):
        fold = fit_once(job, prepared, fit_rows, None)
        if fold["diverged"]:
            return _rank0(fold, {**result, "status": "diverged", "message": f"loss is not finite in fold {index}"})
        fold_metrics.append(_score(fold, prepared, validate_rows, False))
    declared = job["config"].get("calibration") if prepared.task == "binary" else None
    train_rows, calibration_rows = prepared.split.train, None
    if declared:  # the calibrator is fitted on training rows the network does not see; the holdout stays the judge
        train_rows, calibration_rows = calibration.split_rows(prepared.split.train, float(declared["fraction"]),
                                                              int(job["config"]["trainer"]["seed"]))
    fitted = fit_once(job, prepared, train_rows, job["tag"].split(":", 1)[1], prepared.split.holdout)
    digests = multinode.gather_digests(multinode.parameter_digest(fitted["module"].net.state_dict()))  # every rank
    if not multinode.is_writer(fitted["trainer"].is_global_zero):
        return None
    stats = {"train_seconds": round(fitted["seconds"], 3), "samples_per_s": round(fitted["samples_per_s"], 1),
             "final_loss": fitted["final_loss"], "train_rows": int(train_rows.size),
             "holdout_rows": int(prepared.split.holdout.size), "world_size": int(fitted["trainer"].world_size),
             "launcher": "torchrun" if os.environ.get("TORCHELASTIC_RUN_ID") else "lightning",
             "num_nodes": int(fitted["trainer"].num_nodes), "parameter_digests": digests}
    if len(set(digests)) > 1:  # DDP keeps replicas equal; if not, no rank's weights are the model
        return {**result, **stats, "status": "failed", "message": f"DDP ranks ended with different parameters: {digests}"}
    if fitted["diverged"]:
        return {**result, **stats, "status": "diverged", "message": f"training loss is not finite (final {fitted['final_loss']})"}
    if calibration_rows is not None:
        stats["calibration_rows"] = int(calibration_rows.size)
        raw = _outputs(fitted["module"].net, fused.transform(fitted["state"], prepared.columns(calibration_rows)),
                       prepared.task, fitted["target_scale"])
        try:
            fitted["calibrator"] = calibration.fit(declared["method"], raw, _truth(prepared, calibration_rows))
        except ValueError as exc:
            return {**result, **stats, "status": "failed", "message": f"calibration: {exc}"}
    try:
        metrics = _score(fitted, prepared, prepared.split.holdout, True)
    except FloatingPointError as exc:
        return {**result, **stats, "status": "diverged", "message": str(exc)}
    if fold_metrics:
        metrics["cv"] = _cv_summary(fold_metrics)
    if fitted["logger"]:
        scalars = {f"holdout/{k}": v for k, v in metrics.items() if isinstance(v, int | float)}
        fitted["logger"].log_metrics(scalars, step=fitted["trainer"].global_step)
        from flows.training.tensorboard import hparams

        # the HParams tab: this candidate's overrides and config against its held-out metrics (hp/*, not to
        # collide with the holdout/* scalars above)
        fitted["logger"].log_hyperparams(hparams(job), {f"hp/{k}": v for k, v in metrics.items()
                                                        if isinstance(v, int | float) and not isinstance(v, bool) and k != "rows"})
        fitted["logger"].finalize("success")
    config, network = job["config"], fitted["module"].network_name
    artifact_config = {
        "network": network, "network_params": fitted["module"].network_params, "input_dim": fitted["state"]["output_dim"],
        "output_dim": len(prepared.classes) if prepared.task == "multiclass" else 1, "task": prepared.task,
        "target": prepared.target, "classes": prepared.classes, "feature_schema": prepared.schema,
        "preprocessing": fitted["state"], "target_scale": list(fitted["target_scale"]), "lineage": job["lineage"],
        "candidate_config": config, "calibration": fitted.get("calibrator"),
    }
    scalar_metrics = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    save_model(job["tag"], state_dict=fitted["module"].net.state_dict(), config=artifact_config, labels=job["labels"],
               metadata={"metrics": scalar_metrics, "cv": metrics.get("cv", {}), "fairness": metrics.get("fairness", {}),
                         "lineage": job["lineage"], "training": stats}, root=job["store_root"])
    return {**result, **stats, "status": "trained", "metrics": metrics, "message": ""}


def _rank0(fitted: dict[str, Any], result: dict[str, Any]) -> dict[str, Any] | None:
    return result if multinode.is_writer(fitted["trainer"].is_global_zero) else None


def evaluate_stored(job: dict[str, Any]) -> dict[str, Any]:
    """Re-score stored models on this job's holdout: {tag: {"metrics"} | {"error"}}."""
    from flows.training.artifact import load_predictor

    prepared = Prepared(job)
    rows = prepared.split.holdout
    scores: dict[str, Any] = {}
    for tag in job["evaluate_tags"]:
        try:
            predictor = load_predictor(tag, job["store_root"])
            missing = [c for c in predictor.feature_schema if c not in prepared.frame.columns]
            if missing:
                raise KeyError(f"columns {missing} are not in the table")
            if predictor.task != prepared.task or (predictor.config.get("classes") or None) != prepared.classes:
                raise ValueError("task or classes differ from this spec's")
            columns = datapath.columns_at(prepared.frame, list(predictor.feature_schema), rows)
            matrix = predictor.transform(columns)
            scale = tuple(predictor.config.get("target_scale", [0.0, 1.0]))
            output = _outputs(predictor.network, matrix, prepared.task, scale)  # type: ignore[arg-type]
            scores[tag] = {"metrics": _calibrated_metrics(prepared.task, _truth(prepared, rows), output, prepared.groups(rows),
                                                          predictor.config.get("calibration"))}
        except Exception as exc:  # one unreadable model must not hide the others' scores
            scores[tag] = {"error": f"{type(exc).__name__}: {exc}"}
    return {"status": "evaluated", "scores": scores}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m flows.training.run <job.json>", file=sys.stderr)
        return 2
    from daemon.shared import scrub

    scrub.install()  # no secret value in this process's logs
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    if job.get("torch_threads"):
        import torch

        torch.set_num_threads(int(job["torch_threads"]))
    if multinode.distributed_launch():  # torchrun ranks: fail fast on a broken group, bound every collective
        try:
            multinode.preflight(multinode.job_timeout(job), job.get("resources", {}).get("accelerator", "cpu"))
        except RuntimeError as exc:
            print(f"specd: {exc}", file=sys.stderr, flush=True)
            return 1
    try:
        result = evaluate_stored(job) if job["mode"] == "evaluate" else train(job)
    except Exception as exc:
        if not multinode.distributed_launch():
            raise
        print(f"specd: DDP rank {os.environ.get('RANK')} of {os.environ.get('WORLD_SIZE')} failed "
              f"(a peer node stopped or did not answer within training.ddp_timeout_s={multinode.job_timeout(job):g} s): "
              f"{type(exc).__name__}: {str(exc)[:500]}", file=sys.stderr, flush=True)
        return 1
    if result is not None:
        atomic_write_json(Path(job["result_path"]), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
