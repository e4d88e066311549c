"""Small-size run of the service-images benchmark, so it keeps working (not a timed test)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_images_small(capsys):
    from tests.bench.bench_images import main

    figures = main(["--services", "3", "--repeat", "1"])
    out = capsys.readouterr().out
    assert "ratio observe+apply (images recorded)/baseline (CPU, median)" in out and "3 services" in out
    assert figures["services"] == 3.0 and figures["observe+apply (images recorded)"] > 0
