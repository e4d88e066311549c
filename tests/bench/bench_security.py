"""Benchmark: what the hardening costs on the hot paths — scrubbing and the checked Delta log reader.

1. Log lines through the scrubber (record factory + root filter, 20 registered secrets, each with its
   derived forms) vs the same logging with no scrubber installed: min/median/max over the repeats.
2. `scrub_obj` of a status document (200 resources) vs `json.dumps` of it (the work it sits beside).
3. `read_table_log` on a table with N commits (every line parsed and checked, errors named) vs a bare
   `json.loads` over the same lines (the floor: what the unchecked reader did).
Run: python tests/bench/bench_security.py [--lines 20000] [--commits 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _samples(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def _fmt(name: str, ours: list[float], base: list[float]) -> float:
    ratio = statistics.median(ours) / statistics.median(base)
    print(f"{name}: ours min/median/max {min(ours) * 1e3:.2f}/{statistics.median(ours) * 1e3:.2f}/{max(ours) * 1e3:.2f} ms, "
          f"baseline {min(base) * 1e3:.2f}/{statistics.median(base) * 1e3:.2f}/{max(base) * 1e3:.2f} ms, ratio = {ratio:.2f}")
    return ratio


def _log_lines(n: int, logger: logging.Logger) -> None:
    for i in range(n):
        logger.info("table %s: v%d: %d rows written, 0 quarantined (GET https://api.example.com/items?page=%d)", "orders", i, i * 7, i)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    from daemon.shared import scrub
    from flows.tables.delta_log import read_table_log

    figures: dict[str, float] = {}
    stream = io.StringIO()
    logger = logging.getLogger("specd.bench.security")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)

    scrub.clear()
    base = _samples(lambda: _log_lines(args.lines, logger), args.repeat)
    factory = logging.getLogRecordFactory()
    for i in range(20):
        scrub.register(f"tok_{i:02d}_9fQ2xLm7Vb3Kp8RzWq1")
    scrub.install()
    logger.info("a secret tok_03_9fQ2xLm7Vb3Kp8RzWq1 in a line")
    assert "tok_03" not in stream.getvalue().splitlines()[-1]
    ours = _samples(lambda: _log_lines(args.lines, logger), args.repeat)
    figures["log_ratio"] = _fmt(f"log {args.lines} lines, 20 secrets", ours, base)

    status = {"resources": [{"kind": "table", "name": f"t{i}", "message": f"v{i}: {i * 3} rows", "conditions": [{"type": "Ready", "message": "up to date"}]} for i in range(200)]}
    ours = _samples(lambda: scrub.scrub_obj(status), args.repeat * 20)
    base = _samples(lambda: json.dumps(status), args.repeat * 20)
    figures["status_ratio"] = _fmt("scrub_obj(status of 200 resources) vs json.dumps", ours, base)
    logging.setLogRecordFactory(factory)
    scrub.clear()

    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "t" / "_delta_log"
        log_dir.mkdir(parents=True)
        for version in range(args.commits):
            lines = [{"add": {"path": f"part-{version}.parquet", "size": 10, "dataChange": True}},
                     {"commitInfo": {"timestamp": version, "operation": "WRITE", "specd.fingerprint": f"fp{version}"}}]
            if version == 0:
                lines.insert(0, {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}})
            (log_dir / f"{version:020d}.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
        files = sorted(log_dir.iterdir())

        def floor() -> None:
            for path in files:
                with open(path, "rb") as handle:
                    for line in handle:
                        json.loads(line)
            os.listdir(log_dir)

        assert read_table_log(str(Path(tmp) / "t")).version == args.commits - 1
        ours = _samples(lambda: read_table_log(str(Path(tmp) / "t")), args.repeat)
        base = _samples(floor, args.repeat)
        figures["delta_log_ratio"] = _fmt(f"read_table_log, {args.commits} commits, checked vs bare json.loads", ours, base)
    return figures


if __name__ == "__main__":
    main()
