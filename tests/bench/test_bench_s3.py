"""Small-size run of the S3 benchmark (CI): one example table, once on local disk and once on moto's S3."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_s3_small(capsys):
    from tests.bench.bench_s3 import main

    figures = main(["--runs", "1", "--tables", "bronze_orders"])
    out = capsys.readouterr().out
    assert out.count("ratio s3/local ") == 4 and "apply s3: min " in out
    assert figures["built"] == {"local": 1, "s3": 1}  # both tables built in both places
    assert all(v > 0 for v in figures["ratios"].values())
