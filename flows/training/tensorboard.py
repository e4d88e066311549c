"""What a training run writes to TensorBoard beside Lightning's `train/loss`: per-epoch validation curves and
the candidate's hyperparameters (its overrides and the resolved config), so the HParams tab compares the A/B
candidates of a model side by side.

Why a module of its own: run.py stays the training driver; this is only what gets logged. The validation
curves score the network (before any calibration step) on the holdout after every epoch; they are for
reading, never for choosing an epoch or a candidate (promotion still judges the final model once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl

SCALAR_TYPES = (int, float, str, bool)


def hparams(job: Mapping[str, Any]) -> dict[str, Any]:
    """{"candidate", "overrides", "model.hidden", "optim.lr", ...}: scalars for TensorBoard's HParams tab."""
    out: dict[str, Any] = {"candidate": job["candidate"], "overrides": " ".join(job.get("overrides") or []) or "(base config)"}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, SCALAR_TYPES):
            out[prefix] = value
        elif value is not None:
            out[prefix] = str(value)  # lists (hidden sizes), tuples

    walk("", {k: v for k, v in (job.get("config") or {}).items() if k in ("model", "optim", "trainer", "preprocessing", "calibration")})
    return out


class ValidationCurves(pl.Callback):
    """After every training epoch: `score(network)` → logged as `val/<metric>` at step = epoch."""

    def __init__(self, score: Callable[[Any], Mapping[str, Any]]):
        self.score = score

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not trainer.loggers:
            return
        was_training = pl_module.net.training
        metrics = self.score(pl_module.net)
        if was_training:
            pl_module.net.train()
        scalars = {f"val/{k}": float(v) for k, v in metrics.items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and k != "rows"}
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=trainer.current_epoch)
