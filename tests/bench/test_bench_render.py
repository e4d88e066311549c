"""Small-size run of the render/validate benchmark, so it keeps working (not a timed test)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_render_small(capsys):
    from tests.bench.bench_render import main

    figures = main(["--services", "3", "--repeat", "1"])
    out = capsys.readouterr().out
    assert "ratio validate x2 versions/baseline (CPU, median)" in out and "3 services, 24 manifests" in out
    assert figures["objects"] == 24.0  # 8 objects per service: every one rendered, validated and deterministic
