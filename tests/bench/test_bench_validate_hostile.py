"""Small run of the hostile-validate benchmark: the guards find what they must; not a timing test."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench]


def test_bench_validate_hostile_small(capsys):
    from tests.bench.bench_validate_hostile import main

    figures = main(["--repeat", "3"])
    out = capsys.readouterr().out
    assert "ratio guarded/baseline" in out
    assert figures["baseline_s"] > 0 and figures["guarded_s"] > 0
    assert len([k for k in figures if k.startswith("hostile:")]) == 6
