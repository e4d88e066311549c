"""Authorisation cost per request: the access gate (key digest → subject → Casbin decision) against a
bare dict lookup of the key digest (what `auth.api_keys` costs today), measured in the same run.

Two figures: Casbin's own `enforce` with the example policy (every request a cold decision) and the
gate as served (memoised decisions per subject, action, resource, object). Target ≤ 0.1 ms per request.

    .venv/bin/python -m tests.bench.bench_access --requests 20000 --repeat 5
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import statistics
import time
from pathlib import Path

from daemon.shared.access_policy import DEFAULT_MODEL, Enforcer, Gate

EXAMPLE = Path(__file__).resolve().parents[2] / "specs" / "access" / "policy.example.csv"
KEYS = {"SPECD_VIEWER_KEY": "viewer-k", "SPECD_OPERATOR_KEY": "operator-k", "SPECD_PREDICT_KEY": "predict-k"}
REQUESTS = [("predict-k", "services", "predict", "penguin_api"), ("viewer-k", "daemon", "read", "status"),
            ("operator-k", "daemon", "sync", "*"), ("predict-k", "services", "feedback", "penguin_api")]


def _timed(function, n: int) -> float:
    started = time.perf_counter()
    function(n)
    return (time.perf_counter() - started) / n


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    logging.getLogger("specd.access").setLevel(logging.WARNING)  # decisions are logged at INFO; not the cost measured here
    text = EXAMPLE.read_text()
    gate = Gate(Enforcer(DEFAULT_MODEL, text), {hashlib.sha256(v.encode()).hexdigest(): f"key:{k}" for k, v in KEYS.items()})
    enforcer = Enforcer(DEFAULT_MODEL, text)
    table = {hashlib.sha256(v.encode()).hexdigest(): f"key:{k}" for k, v in KEYS.items()}
    cycle = list(itertools.islice(itertools.cycle(REQUESTS), 64))
    subjects = {v: f"key:{k}" for k, v in KEYS.items()}

    def baseline(n: int) -> None:
        for i in range(n):
            key = cycle[i % 64][0]
            assert table.get(hashlib.sha256(key.encode()).hexdigest()) is not None

    def casbin_raw(n: int) -> None:
        for i in range(n):
            key, res, act, obj = cycle[i % 64]
            enforcer.raw_enforce(subjects[key], res, act, obj)

    def gate_served(n: int) -> None:
        for i in range(n):
            key, res, act, obj = cycle[i % 64]
            gate.check({"X-API-Key": key}, res, act, obj)

    expected = [True, True, True, False]
    assert [enforcer.raw_enforce(subjects[k], r, a, o) for k, r, a, o in REQUESTS] == expected
    assert [gate.check({"X-API-Key": k}, r, a, o).status == 200 for k, r, a, o in REQUESTS] == expected
    figures: dict[str, float] = {}
    for name, function, n in (("casbin enforce (cold)", casbin_raw, max(args.requests // 10, 50)),
                              ("access gate (served)", gate_served, args.requests)):
        ours, base = [], []
        for _ in range(args.repeat):
            base.append(_timed(baseline, n))
            ours.append(_timed(function, n))
        ratio = statistics.median(ours) / statistics.median(base)
        print(f"{name}: min/median/max {min(ours) * 1e3:.4f}/{statistics.median(ours) * 1e3:.4f}/{max(ours) * 1e3:.4f} ms/request, "
              f"dict lookup {statistics.median(base) * 1e3:.4f} ms, ratio = {ratio:.1f}x, target <= 0.1 ms: "
              f"{'met' if statistics.median(ours) <= 1e-4 else 'MISSED'}")
        figures[name] = statistics.median(ours)
    return figures


if __name__ == "__main__":
    main()
