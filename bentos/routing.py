"""The routing file: the contract between the daemon (writer) and every service worker (reader).

The daemon replaces it atomically (write a temp file, fsync, rename), so a worker sees either the old
or the new routing, never half of one. Each worker polls its identity (inode + mtime) and swaps on its
own — a reload endpoint would reach only the one worker that received the request.

Variant choice is pure: a sticky key hashes to a fixed point in [0, 1) and the cumulative weights map
that point to a variant, so the same key reaches the same variant in every worker and after restarts.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from daemon.shared.fsio import atomic_write_json

FORMAT = 1
VARIANT_ENV = "SPECD_VARIANT"  # set by a rendered Kubernetes Deployment: this pod serves that variant only


@dataclass(frozen=True)
class Variant:
    name: str
    model_tag: str
    weight: float  # normalised: all variants of a routing add up to 1
    role: str | None = None


@dataclass(frozen=True)
class Routing:
    service: str
    fingerprint: str
    revision: str
    model: str
    variants: tuple[Variant, ...]
    sticky_field: str | None
    sticky_header: str | None
    settings: Mapping[str, Any]  # batching, limits, auth hashes, logging: everything else, as written

    @cached_property
    def live_variants(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.weight > 0)

    @cached_property
    def _cumulative(self) -> tuple[float, ...]:
        """Upper ends of each live variant's share of [0, 1), computed once per routing (not per request)."""
        return cumulative_shares(self.live_variants)

    def choose(self, sticky_key: str | None = None, draw: float | None = None) -> Variant:
        """Weighted choice; a sticky key always lands on the same variant for the same weights."""
        point = sticky_point(self.service, sticky_key) if sticky_key is not None else (random.random() if draw is None else draw)
        variants = self.live_variants
        if not variants:
            raise ValueError("routing has no variant with a positive weight")
        return variants[min(bisect_right(self._cumulative, point), len(variants) - 1)]


def sticky_point(service: str, key: str) -> float:
    digest = hashlib.blake2b(f"{service}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def cumulative_shares(variants: Sequence[Variant]) -> tuple[float, ...]:
    total = sum(v.weight for v in variants)
    shares: list[float] = []
    cumulative = 0.0
    for variant in variants:
        cumulative += variant.weight / total
        shares.append(cumulative)
    return tuple(shares)


def pick(variants: Sequence[Variant], point: float) -> Variant:
    if not variants:
        raise ValueError("routing has no variant with a positive weight")
    # the first variant whose cumulative share is above the point; the last one for float rounding at the top
    return variants[min(bisect_right(cumulative_shares(variants), point), len(variants) - 1)]


def key_digest(api_key: str) -> str:
    """API keys reach the routing file only as digests; the service compares digests."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def routing_to_dict(routing: Routing) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "service": routing.service,
        "fingerprint": routing.fingerprint,
        "revision": routing.revision,
        "model": routing.model,
        "variants": [
            {"name": v.name, "model_tag": v.model_tag, "weight": v.weight, "role": v.role} for v in routing.variants
        ],
        "sticky_field": routing.sticky_field,
        "sticky_header": routing.sticky_header,
        "settings": dict(routing.settings),
    }


def routing_from_dict(data: Mapping[str, Any]) -> Routing:
    if data.get("format") != FORMAT:
        raise ValueError(f"unsupported routing file format {data.get('format')!r}")
    variants = tuple(
        Variant(v["name"], v["model_tag"], float(v["weight"]), v.get("role")) for v in data["variants"]
    )
    return Routing(
        service=data["service"],
        fingerprint=data["fingerprint"],
        revision=data.get("revision", ""),
        model=data["model"],
        variants=variants,
        sticky_field=data.get("sticky_field"),
        sticky_header=data.get("sticky_header"),
        settings=data.get("settings", {}),
    )


def write_routing(path: Path, routing: Routing) -> None:
    write_json_atomic(path, routing_to_dict(routing))


def read_routing(path: Path) -> Routing:
    routing = routing_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    pinned = os.environ.get(VARIANT_ENV)
    return pin_variant(routing, pinned) if pinned else routing


def pin_variant(routing: Routing, name: str) -> Routing:
    """The routing of a pod that serves one variant: on Kubernetes the HTTPRoute splits traffic between
    one Deployment per variant (daemon/core/manifests.py), so each pod routes everything to its own."""
    from dataclasses import replace

    chosen = [v for v in routing.variants if v.name == name]
    if not chosen:
        raise ValueError(f"{VARIANT_ENV}={name!r} is not a variant of service {routing.service!r} "
                         f"(variants: {', '.join(v.name for v in routing.variants)})")
    return replace(routing, variants=(replace(chosen[0], weight=1.0),))


def file_identity(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime_ns, size): changes on every atomic replace, cheap to poll."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def write_json_atomic(path: Path, data: Any, mode: int = 0o600) -> None:
    """Write JSON next to `path`, fsync, rename over it, fsync the directory: readers never see a partial file."""
    atomic_write_json(path, data, mode=mode)
