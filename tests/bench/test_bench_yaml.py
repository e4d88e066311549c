"""CI-size run of bench_yaml.py: the fast YAML path answers the generated and real specs, equal to the
bounded parser (correctness, not timing)."""

from __future__ import annotations

import pytest

from tests.bench import bench_yaml

pytestmark = [pytest.mark.bench]


def test_bench_yaml_tiny():
    figures = bench_yaml.main(["--specs", "60", "--repeat", "3"])
    assert figures["mismatches"] == 0
    assert figures["fast"] == figures["files"] > 60  # every realistic file takes the fast path
