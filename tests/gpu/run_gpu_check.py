"""GPU check: train the example model on the GPU (bf16) and compare our training path with a hand-written loop.

    python tests/gpu/run_gpu_check.py                 # on a GPU machine (< 5 minutes)
    python tests/gpu/run_gpu_check.py --device cpu    # same code path on CPU (what CI runs, small)

1. The example `penguin_sex` spec is trained end to end through `python -m flows.training.run` with
   accelerator=gpu, precision=bf16-mixed (real Delta table from the palmerpenguins package).
2. Throughput: a 64→512→256→1 MLP on synthetic rows, trained (a) by our path — the `TabularMLP`
   LightningModule with the batch-level loader, through Lightning's Trainer — and (b) by a hand-written
   PyTorch loop over the same device-resident tensors, same batch size, optimizer and precision. Prints
   samples/s of each and the ratio (target ≥ 0.9). The first epoch of each is warm-up and not timed.
3. Loader: rows/s of specd's Delta → tensor path (`read_table` with the canonical order → `columns_at` →
   `fused.fit_transform` → tensor on the device) over a Delta table of synthetic rows, printed
   next to the training rate; the loader must not be the bottleneck (loading ÷ training ≥ 1, target ≥ 3).
4. With more than one GPU visible (or `--multi-gpu N` on CPU, where the "GPUs" are gloo processes):
   (a) N candidates of the example at once on disjoint GPU sets (`launch.gpu_slots`, one GPU each), checking
   no two that overlapped in time shared a GPU; (b) one DDP candidate over all GPUs through torchrun,
   checking world size N and identical parameters on every rank (`parameter_digests`).
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


def loader_rate(rows: int, width: int, device: str, runs: int = 2) -> float:
    """specd's Delta → device tensor rate (rows/s, best of `runs`) over a fresh table of rows × width."""
    import numpy as np
    import polars as pl
    import torch
    from deltalake import write_deltalake

    from flows.training import data as datapath
    from flows.training import fused

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(width)]
    with tempfile.TemporaryDirectory() as scratch:
        uri = str(Path(scratch) / "table")
        write_deltalake(uri, pl.DataFrame({n: rng.normal(size=rows) for n in names}).to_arrow(), mode="overwrite")
        best = 0.0
        for _ in range(runs):
            started = time.perf_counter()
            loaded = datapath.read_table(uri, 0, names)
            columns = datapath.columns_at(loaded, names, np.arange(loaded.height))
            _, matrix = fused.fit_transform(columns, dict.fromkeys(names, "float64"), {n: {} for n in names})
            tensor = torch.from_numpy(matrix).to(device)
            _sync(device)
            best = max(best, rows / (time.perf_counter() - started))
            assert tuple(tensor.shape) == (rows, width)
    return best


def _example_job(root: Path, device: str, bf16: bool, candidate: str, resources: dict, epochs: int | None = None) -> dict:
    import yaml

    from daemon.schema.model import ModelSpec
    from flows.training.jobs import train_job
    from tests.helpers.models import EXAMPLE, gold_uri

    data = yaml.safe_load(EXAMPLE.read_text())
    if epochs:
        data["trainer"]["epochs"] = epochs
    spec = ModelSpec.model_validate(data)
    features = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
    return train_job(model="penguin_sex", candidate="a", candidate_fp=candidate.ljust(64, "0"), model_fp="0" * 64,
                     git_sha="gpu-check", spec_data=spec.model_dump(mode="json"), features=features, table_uri=gold_uri(root),
                     delta_version=0, data_id=None, storage_options={}, config=spec.candidate_config("a"),
                     resources=resources, store_root=str(root / "bentoml"), work_dir=root / "work",
                     tensorboard_dir=str(root / "tb"), code_version="model/1")


def multi_gpu(device: str, count: int, bf16: bool) -> dict:
    """(a) `count` candidates at once on disjoint single-GPU sets; (b) one DDP candidate over all of them."""
    from flows.training.launch import gpu_slots, run_jobs
    from tests.helpers.models import gold_uri, write_penguin_table

    gpu = device.startswith("cuda")
    precision = "bf16-mixed" if bf16 else "32-true"
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_penguin_table(gold_uri(root))
        single = {"accelerator": "gpu" if gpu else "cpu", "devices": 1, "precision": precision}
        epochs = None if gpu else 2  # on CPU only the code path is under test
        jobs = [_example_job(root, device, bf16, f"c{i}", single, epochs) for i in range(count)]
        for index, job in enumerate(jobs):
            job["candidate"] = f"c{index}"
            job["result_path"] = str(root / "work" / f"result-c{index}.json")
        slots = gpu_slots(list(range(count)), 1, count) if gpu else [None] * count
        env = {"BENTOML_HOME": str(root / "bentoml")}
        started = time.perf_counter()
        runs = run_jobs(jobs, root / "work", root / "logs", slots=slots, env=env)
        concurrent_s = time.perf_counter() - started
        failed = [r for r in runs if r.result is None or r.result.get("status") != "trained"]
        if failed:
            raise SystemExit(f"a concurrent candidate failed (exit {failed[0].returncode}):\n{failed[0].log_tail(40)}")
        for a in runs:  # candidates that overlapped in time never shared a GPU
            for b in runs:
                if a is not b and gpu and a.started_at < b.ended_at and b.started_at < a.ended_at:
                    assert not set(a.gpus or ()) & set(b.gpus or ()), (a.gpus, b.gpus)
        overlapped = max(sum(1 for b in runs if b.started_at < a.ended_at and a.started_at < b.ended_at) for a in runs)
        ddp = {"accelerator": "gpu" if gpu else "cpu", "devices": count, "precision": precision, "strategy": "ddp",
               "launcher": "torchrun", "ddp_timeout_s": 120}
        job = _example_job(root, device, bf16, "ddp", ddp, epochs)
        job["candidate"], job["result_path"] = "ddp", str(root / "work" / "result-ddp.json")
        if not gpu:
            job["torch_threads"] = 1
        started = time.perf_counter()
        (run,) = run_jobs([job], root / "work", root / "logs", slots=[list(range(count)) if gpu else None], env=env)
        if run.result is None or run.result.get("status") != "trained":
            raise SystemExit(f"the DDP candidate failed (exit {run.returncode}):\n{run.log_tail(40)}")
        digests = run.result["parameter_digests"]
        assert run.result["world_size"] == count and len(set(digests)) == 1, run.result
        return {"candidates": count, "gpu_sets": [list(r.gpus) if r.gpus else None for r in runs],
                "max_overlap": overlapped, "concurrent_seconds": round(concurrent_s, 1),
                "ddp_world_size": run.result["world_size"], "ddp_identical_parameters": True,
                "ddp_roc_auc": run.result.get("metrics", {}).get("roc_auc"), "ddp_seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows (default: 4M on GPU, 100k on CPU)")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs (default: 5 on GPU, 2 on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 32768 on GPU, 4096 on CPU)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each side counts")
    parser.add_argument("--skip-example", action="store_true")
    parser.add_argument("--loader-rows", type=int, default=None, help="rows of the loader table (default: 1M on GPU, 50k on CPU)")
    parser.add_argument("--multi-gpu", type=int, default=None,
                        help="run the multi-GPU variant on N devices (default: all visible GPUs when more than one; "
                             "on CPU, N gloo processes)")
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
    loading = loader_rate(args.loader_rows or (1_000_000 if gpu else 50_000), 64, args.device)
    print(f"specd loader (Delta -> {args.device} tensor): {loading:,.0f} rows/s; training {ours:,.0f} samples/s; "
          f"ratio loading/training: {loading / ours:.1f} (target >= 3)")
    count = args.multi_gpu or (torch.cuda.device_count() if gpu else 0)
    if count > 1:
        print("multi-gpu:", json.dumps(multi_gpu(args.device, count, bf16)))
    elif gpu:
        print("multi-gpu: skipped (one GPU visible)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
