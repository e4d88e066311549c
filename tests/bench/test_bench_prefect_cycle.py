"""Small-size run of the Prefect cycle benchmark against the session's Prefect server: the daemon converges
with and without Prefect, every figure is printed and measured (not tuned here; the targets are the
full benchmark's, on an embedded server)."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_prefect_cycle_small(capsys, prefect_api):
    from tests.bench.bench_prefect_cycle import main

    figures = main(["--starts", "1", "--commits", "1", "--idle-s", "2", "--external"])
    out = capsys.readouterr().out
    for label in ("first cycle beyond start, Prefect", "commit → converged − build, Prefect", "Prefect overhead per cycle",
                  "idle CPU of the process tree, Prefect"):
        assert label in out, out
    assert re.search(r"Prefect overhead per cycle \(median with − without\) = -?[0-9.]+ s", out), out
    assert figures["commit_s"] > 0 and figures["commit_noprefect_s"] > 0 and figures["idle_cpu_per_min"] >= 0
