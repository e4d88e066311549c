"""GPU check: train the example model on the GPU (bf16) and compare our training path with a hand-written loop.

    python tests/gpu/run_gpu_check.py                 # on a GPU machine (< 5 minutes)
    python tests/gpu/run_gpu_check.py --device cpu    # same code path on CPU (what CI runs, small)

1. The example `penguin_sex` spec is trained end to end through `python -m flows.training.run` with
   accelerator=gpu, precision=bf16-mixed (real Delta table from the palmerpenguins package).
2. Throughput: a 64→512→256→1 MLP on synthetic rows, trained (a) by our path — the `TabularMLP`
   LightningModule with the batch-level loader, through Lightning's Trainer — and (b) by a hand-written
   PyTorch loop over the same device-resident tensors, same batch size, optimizer and precision. Prints
   samples/s of each and the ratio (target ≥ 0.9). The first epoch of each is warm-up and not timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def synthetic(rows: int, width: int, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(rows, width, generator=generator)
    weights = torch.randn(width, generator=generator)
    targets = ((features @ weights) > 0).long()
    return features, targets


def hand_loop(features, targets, device: str, epochs: int, batch: int, bf16: bool) -> float:
    """The baseline: plain PyTorch, data on the device, one randperm per epoch, slicing batches."""
    import torch

    from flows.training.networks import MLP

    torch.manual_seed(0)
    model = MLP(features.shape[1], 1, hidden=[512, 256]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x, y = features.to(device), targets.to(device)
    timed_samples, started = 0, 0.0
    for epoch in range(epochs + 1):
        if epoch == 1:
            _sync(device)
            started = time.perf_counter()
        order = torch.randperm(x.shape[0], device=device)
        for index in torch.split(order, batch):
            with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16, enabled=bf16):
                output = model(x[index])
            loss = loss_fn(output[:, 0].float(), y[index].float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if epoch >= 1:
                timed_samples += index.numel()
    _sync(device)
    return timed_samples / (time.perf_counter() - started)


def our_path(features, targets, device: str, epochs: int, batch: int, bf16: bool) -> float:
    """specd's path: TabularMLP (LightningModule) + batch-level loader through Lightning's Trainer."""
    import lightning.pytorch as pl

    from flows.training.models import TabularMLP

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            _sync(device)
            self.starts.append(time.perf_counter())

        def on_train_end(self, trainer, module) -> None:
            _sync(device)
            self.starts.append(time.perf_counter())

    pl.seed_everything(0, verbose=False)
    module = TabularMLP(features.shape[1], 1, "binary", {"name": "adamw", "lr": 1e-3}, hidden=[512, 256])
    module.train_data, module.batch_size, module.seed = (features, targets), batch, 0
    timer = EpochTimer()
    trainer = pl.Trainer(accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1, max_epochs=epochs + 1,
                         precision="bf16-mixed" if bf16 else "32-true", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                         callbacks=[timer], num_sanity_val_steps=0, deterministic=False)
    trainer.fit(module)
    return features.shape[0] * epochs / (timer.starts[-1] - timer.starts[1])


def compare(features, targets, device: str, epochs: int, batch: int, bf16: bool, rounds: int = 2) -> tuple[float, float]:
    """Alternate hand-written and specd runs; the best of each (noise on shared machines only slows a run down)."""
    hand, ours = 0.0, 0.0
    for _ in range(rounds):
        hand = max(hand, hand_loop(features, targets, device, epochs, batch, bf16))
        ours = max(ours, our_path(features, targets, device, epochs, batch, bf16))
    return hand, ours


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def train_example(device: str, bf16: bool) -> dict:
    """The example spec end to end through the training entry point, on the requested device."""
    import yaml

    from daemon.schema.model import ModelSpec
    from flows.training.jobs import train_job
    from flows.training.launch import run_jobs
    from tests.helpers.models import EXAMPLE, gold_uri, write_penguin_table

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        uri = gold_uri(root)
        write_penguin_table(uri)
        spec = ModelSpec.model_validate(yaml.safe_load(EXAMPLE.read_text()))
        features = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
        resources = {"accelerator": "gpu" if device.startswith("cuda") else "cpu", "devices": 1,
                     "precision": "bf16-mixed" if bf16 else "32-true"}
        job = train_job(model="penguin_sex", candidate="a", candidate_fp="0" * 64, model_fp="0" * 64, git_sha="gpu-check",
                        spec_data=spec.model_dump(mode="json"), features=features, table_uri=uri, delta_version=0, data_id=None,
                        storage_options={}, config=spec.candidate_config("a"), resources=resources,
                        store_root=str(root / "bentoml"), work_dir=root / "work", tensorboard_dir=str(root / "tb"),
                        code_version="model/1")
        started = time.perf_counter()
        (run,) = run_jobs([job], root / "work", root / "logs")
        if run.result is None:
            raise SystemExit(f"example training failed (exit {run.returncode}):\n{run.log_tail(40)}")
        return {"status": run.result["status"], "roc_auc": run.result.get("metrics", {}).get("roc_auc"),
                "accuracy": run.result.get("metrics", {}).get("accuracy"), "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows (default: 4M on GPU, 100k on CPU)")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs (default: 5 on GPU, 2 on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 32768 on GPU, 4096 on CPU)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each side counts")
    parser.add_argument("--skip-example", action="store_true")
    args = parser.parse_args(argv)
    import torch

    gpu = args.device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --device cpu")
    rows = args.rows or (4_000_000 if gpu else 100_000)
    epochs = args.epochs or (5 if gpu else 2)
    batch = args.batch or (32_768 if gpu else 4_096)
    bf16 = gpu
    card = torch.cuda.get_device_name(0) if gpu else "cpu"
    print(f"device: {card}; torch {torch.__version__}; rows {rows}, batch {batch}, timed epochs {epochs}, bf16 {bf16}")
    if not args.skip_example:
        print("example penguin_sex:", json.dumps(train_example(args.device, bf16)))
    features, targets = synthetic(rows, 64)
    hand, ours = compare(features, targets, args.device, epochs, batch, bf16, args.rounds)
    print(f"hand-written loop: {hand:,.0f} samples/s")
    print(f"specd training path: {ours:,.0f} samples/s")
    print(f"ratio specd/hand-written: {ours / hand:.2f} (target >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
