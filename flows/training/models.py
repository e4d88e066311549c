"""Built-in LightningModules (the `_target_` allowlist) and the batch-level data loader they train on.

Why a custom loader: a `TensorDataset` DataLoader fetches and collates row by row (~15× slower). Here a
batch sampler yields one index tensor per batch (a seeded permutation, generated on the data's device),
and the dataset's `__getitems__` gathers the whole batch in one indexing op. On a GPU the tensors live
in device memory when they fit, else in pinned host memory. DDP shards the permutation by rank (equal
batch counts per rank), so Lightning's distributed sampler is switched off.

The training step avoids per-step host syncs: the epoch loss is accumulated on the device and checked
once per epoch (all-reduced under DDP) — a NaN/inf loss marks the run diverged and stops it.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from flows.training.networks import build_network


class TensorBatches(Dataset):
    """Features/targets as whole tensors; a batch is one gather, never a per-row fetch."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor):
        self.features, self.targets = features, targets

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - batch path is used
        return self.features[index], self.targets[index]

    def __getitems__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = index.to(self.features.device, non_blocking=True)
        return self.features[index], self.targets[index]


def keep_batch(batch: Any) -> Any:
    """collate_fn: the dataset already returns a collated batch."""
    return batch


class ShuffledBatches(Sampler):
    """Yields index tensors of one batch each: a seeded per-epoch permutation, sharded by DDP rank."""

    def __init__(self, rows: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu", shuffle: bool = True):
        self.rows, self.batch_size, self.seed = rows, batch_size, seed
        self.rank, self.world_size, self.device, self.shuffle = rank, world_size, torch.device(device), shuffle
        self.epoch = 0
        self.per_rank = rows // world_size if world_size > 1 else rows

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.per_rank + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        if self.shuffle:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.rows, generator=generator, device=self.device)
        else:
            order = torch.arange(self.rows, device=self.device)
        order = order[self.rank * self.per_rank:(self.rank + 1) * self.per_rank]
        yield from torch.split(order, self.batch_size)


def batch_loader(features: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True) -> DataLoader:
    sampler = ShuffledBatches(features.shape[0], batch_size, seed, rank, world_size, features.device, shuffle)
    pin = features.device.type == "cpu" and features.is_pinned()
    return DataLoader(TensorBatches(features, targets), batch_sampler=sampler, collate_fn=keep_batch,
                      num_workers=0, pin_memory=pin)


class TabularModule(pl.LightningModule):
    """Shared training logic; subclasses choose the network. Loss by task: BCE / CE / MSE."""

    network_name = "MLP"

    def __init__(self, input_dim: int, output_dim: int, task: str, optim: dict[str, Any], **network_params: Any):
        super().__init__()
        self.task, self.optim = task, dict(optim)
        self.network_params = dict(network_params)
        self.net = build_network(self.network_name, input_dim, output_dim, self.network_params)
        self.loss_fn: nn.Module = (
            nn.BCEWithLogitsLoss() if task == "binary" else nn.CrossEntropyLoss() if task == "multiclass" else nn.MSELoss()
        )
        self.diverged = False
        self.epoch_losses: list[float] = []
        self._loss_sum: torch.Tensor | None = None
        self._steps = 0
        self.train_data: tuple[torch.Tensor, torch.Tensor] | None = None
        self.batch_size, self.seed = 256, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "binary":
            return self.loss_fn(output[:, 0].float(), target.float())
        if self.task == "multiclass":
            return self.loss_fn(output.float(), target)
        return self.loss_fn(output[:, 0].float(), target.float())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        features, target = batch
        loss = self.loss(self.net(features), target)
        detached = loss.detach()
        self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
        self._steps += 1
        return loss

    def on_train_epoch_end(self) -> None:
        if self._loss_sum is None:
            return
        mean = self._loss_sum / max(self._steps, 1)
        mean = self.trainer.strategy.reduce(mean, reduce_op="mean")
        value = float(mean)
        self._loss_sum, self._steps = None, 0
        self.epoch_losses.append(value)
        self.log("train/loss", value, on_epoch=True, sync_dist=False, rank_zero_only=True)
        if not torch.isfinite(torch.tensor(value)):
            self.diverged = True
            self.trainer.should_stop = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        name, lr, decay = self.optim.get("name", "adamw"), float(self.optim["lr"]), float(self.optim.get("weight_decay", 0.0))
        if name == "sgd":
            return torch.optim.SGD(self.parameters(), lr=lr, momentum=float(self.optim.get("momentum", 0.9)), weight_decay=decay)
        optimizer = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        return optimizer(self.parameters(), lr=lr, weight_decay=decay)

    def train_dataloader(self) -> DataLoader:
        assert self.train_data is not None, "set train_data before fit"
        features, targets = self.train_data
        if self.device.type != "cpu":
            free, _ = torch.cuda.mem_get_info(self.device) if self.device.type == "cuda" else (0, 0)
            if features.nbytes + targets.nbytes < 0.25 * free:
                features, targets = features.to(self.device), targets.to(self.device)
            else:
                features, targets = features.pin_memory(), targets.pin_memory()
        return batch_loader(features, targets, self.batch_size, self.seed, self.global_rank, self.trainer.world_size)


class TabularMLP(TabularModule):
    network_name = "MLP"


class LogisticBaseline(TabularModule):
    """Logistic regression (classification) as one linear layer trained with the same loop."""

    network_name = "Linear"


class LinearBaseline(TabularModule):
    """Linear regression baseline."""

    network_name = "Linear"


MODULES = {"flows.training.models.TabularMLP": TabularMLP, "flows.training.models.LogisticBaseline": LogisticBaseline,
           "flows.training.models.LinearBaseline": LinearBaseline}
