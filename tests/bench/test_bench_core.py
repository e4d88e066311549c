"""Small-size runs of the core benchmarks, so they keep working (not timed tests)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_plan_small(capsys):
    from tests.bench.bench_plan import main

    figures = main(["--sizes", "60,120", "--repeat", "3", "--cli-repeat", "1"])
    out = capsys.readouterr().out
    assert "ratio warm/parse" in out and "ratio second/bare (CPU)" in out and "scaling: CPU per spec" in out
    assert figures["warm_cpu_120_s"] > 0 and figures["parse_cpu_120_s"] > 0
    assert figures["hit_rate_60"] == figures["hit_rate_120"] == 1.0
    assert figures["cli_second_cpu_s"] > 0 and figures["cli_cold_cpu_s"] > figures["bare_python_cpu_s"]


@pytest.mark.e2e
def test_bench_daemon_small(capsys, prefect_api):
    from tests.bench.bench_daemon import main

    figures = main(["--commits", "1", "--poll", "1", "--idle-s", "2"])
    out = capsys.readouterr().out
    assert "ratio remote/local" in out and "ratio =" in out
    assert figures["local_s"] > 0 and figures["rss_mb"] > 0


def test_bench_cycle_small(capsys):
    from tests.bench.bench_cycle import main

    figures = main(["--size", "40", "--repeat", "3", "--writes", "10"])
    out = capsys.readouterr().out
    assert "ratio idle/floor" in out and "ratio durable/plain" in out
    assert figures["applied"] == 40.0 and figures["idle_s"] > 0 and figures["durable_s"] > 0
