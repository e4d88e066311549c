"""Training benchmark on CPU: specd's training loop vs a hand-written one, and specd's Delta→tensor
loader vs a hand-written `polars.read_delta → numpy → torch`, every figure measured in the same run.

    python tests/bench/bench_training.py [--size ROWS] [--runs N]

Prints, each as min/median/max over N runs (N ≥ 3 by default):

- training samples/s of the hand-written loop and of specd's Lightning path, and their ratio (same model
  64→512→256→1, data, batch and optimizer; target ≥ 0.9);
- rows/s of the hand-written loader (Delta at a pinned version → Polars → float32 numpy → tensor, no
  preprocessing, no canonical order) and of specd's (`flows.training.data.read_table` with its
  canonical row order → `columns_at` → `preprocess.fit` + `transform` → tensor), and their ratio per
  run (target ≥ 0.8), also per CPU-second of the process (steadier where other work shares the cores);
- specd's loading rate over specd's training rate (target ≥ 3: loading must not be the bottleneck).

`--shapes 2000000x8,200000x64:int,...` prints only the loader ratios, on tables of other shapes and
types (the default shape is the issue's: 64 float columns).

It also checks what the speed must not cost: the same table rewritten in another row order and split
into several files loads into a byte-identical tensor (a rebuilt table trains the same model).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "gpu"))


def write_tables(rows: int, width: int, scratch: Path, kind: str = "float") -> tuple[str, str, list[str]]:
    """The same data twice: one file in generation order, and shuffled into three files. `kind`: float
    (normal values), int (integers 0–999) or mixed (floats, small integer codes stored as floats, and ints)."""
    import numpy as np
    import polars as pl
    from deltalake import write_deltalake

    rng = np.random.default_rng(0)
    def column(i: int) -> np.ndarray:
        if kind == "int" or (kind == "mixed" and i % 3 == 2):
            return rng.integers(0, 1000, rows)
        if kind == "mixed" and i % 3 == 1:
            return rng.integers(0, 50, rows).astype(np.float64)
        return rng.normal(size=rows)

    frame = pl.DataFrame({f"f{i}": column(i) for i in range(width)})
    first, rebuilt = str(scratch / "table"), str(scratch / "rebuilt")
    write_deltalake(first, frame.to_arrow(), mode="overwrite")
    shuffled = frame[rng.permutation(rows)]
    for part in np.array_split(np.arange(rows), 3):
        write_deltalake(rebuilt, shuffled[part].to_arrow(), mode="append")
    return first, rebuilt, list(frame.columns)


def hand_loader(uri: str, names: list[str]):
    """The baseline: read the pinned version, one float32 C-contiguous matrix, a tensor."""
    import numpy as np
    import polars as pl
    import torch

    frame = pl.read_delta(uri, version=0, columns=names)
    return torch.from_numpy(np.ascontiguousarray(frame.to_numpy(), dtype=np.float32))


def our_loader(uri: str, names: list[str]):
    """specd's path as flows.training.run.Prepared + fit_once take it (all rows as training rows)."""
    import numpy as np
    import torch

    from flows.training import data as datapath
    from flows.training import fused

    loaded = datapath.read_table(uri, None, names)
    columns = datapath.columns_at(loaded, names, np.arange(loaded.height))
    _, matrix = fused.fit_transform(columns, dict.fromkeys(names, "float64"), {n: {} for n in names})
    return torch.from_numpy(matrix)


def timed(function: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads): the second is steadier on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def compare_loaders(uri: str, names: list[str], rows: int, runs: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """(hand-written rows/s, specd rows/s, their ratio, the ratio per CPU-second), one of each per run,
    after a warm-up of both; who goes first alternates."""
    hand_load, our_load, load_ratio, cpu_ratio = [], [], [], []
    hand_loader(uri, names), our_loader(uri, names)  # warm-up: imports, page cache
    for run in range(runs):
        pair = [("hand", lambda: hand_loader(uri, names)), ("ours", lambda: our_loader(uri, names))]
        seconds = {name: timed(f) for name, f in (pair if run % 2 == 0 else pair[::-1])}
        hand_load.append(rows / seconds["hand"][0])
        our_load.append(rows / seconds["ours"][0])
        load_ratio.append(our_load[-1] / hand_load[-1])
        cpu_ratio.append(seconds["hand"][1] / seconds["ours"][1])
    return hand_load, our_load, load_ratio, cpu_ratio


def loader_shapes(shapes: str, runs: int) -> int:
    """The loader comparison on other shapes of table: tall and narrow, wide, integers, mixed."""
    print(f"loader ratios specd/hand-written over {runs} runs (min / median / max), per shape:")
    for shape in shapes.split(","):
        size, _, kind = shape.partition(":")
        rows, width = (int(v) for v in size.lower().split("x"))
        with tempfile.TemporaryDirectory() as scratch:
            uri, _, names = write_tables(rows, width, Path(scratch), kind or "float")
            hand_load, our_load, load_ratio, cpu_ratio = compare_loaders(uri, names, rows, runs)
        print(f"{rows} x {width} {kind or 'float'}: hand-written {spread(hand_load)} rows/s, specd {spread(our_load)} rows/s, "
              f"ratio {spread(load_ratio, '{:.2f}')}, per CPU-second {spread(cpu_ratio, '{:.2f}')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="specd training benchmark (CPU)")
    parser.add_argument("--size", type=int, default=200_000, help="rows of synthetic training data")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=None,
                        help="rows the training loops run on (default --size; samples/s hardly depends on it)")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shapes", default=None,
                        help="only the loaders, on tables of these shapes: ROWSxWIDTH[:float|int|mixed],... (e.g. 2000000x8,200000x64:int)")
    args = parser.parse_args(argv)
    if args.shapes:
        return loader_shapes(args.shapes, args.runs)
    import torch
    from run_gpu_check import hand_loop, our_path, synthetic

    with tempfile.TemporaryDirectory() as scratch:
        uri, rebuilt, names = write_tables(args.size, args.width, Path(scratch))
        hand_load, our_load, load_ratio, cpu_ratio = compare_loaders(uri, names, args.size, args.runs)
        tensor = our_loader(uri, names)
        same = bool(torch.equal(tensor, our_loader(rebuilt, names)))
        assert tuple(tensor.shape) == (args.size, args.width) and tensor.dtype == torch.float32

    features, targets = synthetic(args.train_size or args.size, args.width)
    hand_train, our_train = [], []
    for _ in range(args.runs):
        hand_train.append(hand_loop(features, targets, "cpu", args.epochs, args.batch, False))
        our_train.append(our_path(features, targets, "cpu", args.epochs, args.batch, False))
    train_ratio = [o / h for o, h in zip(our_train, hand_train, strict=True)]
    load_over_train = [load / train for load, train in zip(our_load, our_train, strict=True)]

    print(f"cpu threads: {torch.get_num_threads()}; rows {args.size} (training {args.train_size or args.size}); "
          f"width {args.width}; batch {args.batch}; "
          f"timed epochs {args.epochs}; runs {args.runs} (min / median / max)")
    print(f"hand-written loop: {spread(hand_train)} samples/s")
    print(f"specd training path: {spread(our_train)} samples/s")
    print(f"ratio training specd/hand-written: {spread(train_ratio, '{:.2f}')} (target >= 0.9)")
    print(f"hand-written loader (read_delta -> numpy -> torch): {spread(hand_load)} rows/s")
    print(f"specd loader (read_table -> fit -> transform -> torch): {spread(our_load)} rows/s")
    print(f"ratio loading specd/hand-written: {spread(load_ratio, '{:.2f}')} (target >= 0.8)")
    print(f"ratio loading specd/hand-written, per CPU-second: {spread(cpu_ratio, '{:.2f}')}")
    print(f"ratio loading/training: {spread(load_over_train, '{:.1f}')} (target >= 3)")
    print(f"rebuilt table (shuffled, 3 files) loads into an identical tensor: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
