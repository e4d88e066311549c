"""Small-size run of the drift-flow-run benchmark against the session's Prefect server (not a timed test):
the check gives the same verdict inline and as a flow run, each due check is one run, a not-due one none."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_drift_flow_small(capsys, prefect_api):
    from tests.bench.bench_drift_flow import main

    figures = main(["--runs", "1", "--rows", "300"])
    out = capsys.readouterr().out
    assert "ratio to inline" in out and "Prefect overhead per due check" in out, out
    assert figures["share_inline"] == figures["share_flow"] and "bill_length_mm" in figures["drifted"]
    assert figures["runs"] == 2 and figures["not_due_runs"] == 0  # warm-up + one timed run; the not-due checks none
