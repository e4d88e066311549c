"""Routing file and variant choice: atomic replace, deterministic sticky keys, weights honoured."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from bentos.routing import Routing, Variant, file_identity, pick, read_routing, sticky_point, write_routing


def _routing(weights=(0.9, 0.1), fingerprint="fp1") -> Routing:
    variants = (Variant("champion", "m:a", weights[0], "champion"), Variant("challenger", "m:b", weights[1], "challenger"))
    return Routing("svc", fingerprint, "rev", "m", variants, "user_id", None, {"batching": {"enabled": True}})


def test_round_trip_and_atomic_replace(tmp_path):
    path = tmp_path / "run" / "routing.json"
    write_routing(path, _routing())
    first = file_identity(path)
    assert read_routing(path) == _routing()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"  # holds API-key digests
    write_routing(path, _routing(fingerprint="fp2"))
    assert file_identity(path) != first  # new inode: workers notice
    assert read_routing(path).fingerprint == "fp2"
    assert [p.name for p in path.parent.iterdir()] == ["routing.json"]  # no temp files left behind


def test_sticky_keys_are_deterministic_and_follow_weights():
    routing = _routing()
    for key in ("u1", "u2", "alice", "42"):
        assert {routing.choose(key).name for _ in range(20)} == {routing.choose(key).name}
    assert sticky_point("svc", "u1") != sticky_point("other", "u1")  # per service
    counts = Counter(routing.choose(f"user-{i}").name for i in range(20000))
    assert counts["challenger"] / 20000 == pytest.approx(0.1, abs=0.01)


def test_weighted_draws_and_zero_weight_variants():
    routing = _routing((0.5, 0.5))
    assert routing.choose(draw=0.49).name == "champion"
    assert routing.choose(draw=0.51).name == "challenger"
    only = _routing((1.0, 0.0))
    assert {only.choose(draw=d / 100).name for d in range(100)} == {"champion"}
    assert pick(only.variants, 0.999999).name == "champion"  # a zero weight at the end is never picked
    with pytest.raises(ValueError, match="positive weight"):
        _routing((0.0, 0.0)).choose(draw=0.5)


def test_unknown_format_is_rejected(tmp_path):
    path = tmp_path / "routing.json"
    path.write_text('{"format": 99}')
    with pytest.raises(ValueError, match="unsupported routing file format"):
        read_routing(path)
