"""Training benchmark on CPU: specd's training path vs a hand-written loop, and Delta→tensor loading rate.

    python tests/bench/bench_training.py [--size ROWS]

Prints samples/s of both training loops and their ratio (target ≥ 0.9; same model 64→512→256→1, same
data, batch, optimizer), then the rate of our data path (Delta at a pinned version → Polars → fitted
preprocessing → tensors) against the training step rate, as a ratio: loading must not be the bottleneck.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "gpu"))


def loading_rate(rows: int, width: int) -> float:
    """Rows/s from a Delta table on disk to a float32 feature tensor through flows.training.data/preprocess."""
    import numpy as np
    import polars as pl
    import torch
    from deltalake import write_deltalake

    from flows.training import data as datapath
    from flows.training import preprocess

    rng = np.random.default_rng(0)
    frame = pl.DataFrame({f"f{i}": rng.normal(size=rows) for i in range(width)})
    with tempfile.TemporaryDirectory() as scratch:
        uri = str(Path(scratch) / "table")
        write_deltalake(uri, frame.to_arrow(), mode="overwrite")
        names = list(frame.columns)
        started = time.perf_counter()
        loaded = datapath.read_table(uri, 0, names)
        rows_all = np.arange(loaded.height)
        columns = datapath.columns_at(loaded, names, rows_all)
        schema = dict.fromkeys(names, "float64")
        state = preprocess.fit(columns, schema, {n: {} for n in names})
        tensor = torch.from_numpy(preprocess.transform(state, columns))
        elapsed = time.perf_counter() - started
    assert tensor.shape == (rows, width)
    return rows / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="specd training benchmark (CPU)")
    parser.add_argument("--size", type=int, default=200_000, help="rows of synthetic training data")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    import torch
    from run_gpu_check import compare, synthetic

    features, targets = synthetic(args.size, 64)
    hand, ours = compare(features, targets, "cpu", args.epochs, args.batch, False, args.rounds)
    load = loading_rate(args.size, 64)
    print(f"cpu threads: {torch.get_num_threads()}; rows {args.size}; batch {args.batch}; timed epochs {args.epochs}")
    print(f"hand-written loop: {hand:,.0f} samples/s")
    print(f"specd training path: {ours:,.0f} samples/s")
    print(f"ratio training specd/hand-written: {ours / hand:.2f} (target >= 0.9)")
    print(f"delta->tensor loading: {load:,.0f} rows/s")
    print(f"ratio loading/training: {load / ours:.1f} (loading must exceed training: > 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
