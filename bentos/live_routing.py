"""What one worker serves right now, and how it follows the routing file without a restart.

A watcher thread polls the routing file's identity (inode, mtime, size) every `POLL_S`. On a change it
loads every model the new routing needs *before* switching (off the event loop; already loaded models
come from a small cache, so a rollback to the previous champion is instant), then replaces one
reference. A request reads that reference once, so requests in flight finish on the variant they were
routed to. If a model fails to load, the previous routing stays live and the worker reports itself
degraded — in `/status` and in its worker status file, which the daemon's adapter reads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bentos.routing import Routing, file_identity, read_routing, write_json_atomic

log = logging.getLogger("specd.service")
POLL_S = 0.1
RETRY_S = 2.0  # no routing live yet (store not filled): retry the same file this often
CACHE_SIZE = 8


@dataclass
class LoadedVariant:
    name: str
    tag: str
    predictor: Any  # flows.training.artifact.Predictor
    schema: dict[str, str]
    batcher: Any = None  # bentos.batching.Batcher, created by the service (needs its settings)


@dataclass
class Live:
    routing: Routing
    variants: dict[str, LoadedVariant]
    known_features: frozenset[str]
    settings: dict[str, Any] = field(default_factory=dict)


def worker_status_dir(routing_file: Path) -> Path:
    return Path(routing_file).parent / "workers"


class RoutingWatcher:
    def __init__(
        self,
        routing_file: Path,
        load_predictor: Callable[[str], Any],
        make_batcher: Callable[[str, Any, dict[str, Any]], Any],
        on_swap: Callable[[Live | None, Live], None] = lambda old, new: None,
    ):
        self.routing_file = Path(routing_file)
        self._load_predictor = load_predictor
        self._make_batcher = make_batcher
        self._on_swap = on_swap
        self._cache: OrderedDict[str, Any] = OrderedDict()  # tag -> predictor
        self.live: Live | None = None
        self.failed_fingerprint: str | None = None
        self.error: str | None = None
        self.swaps = 0
        self._identity: tuple | None = None
        self._last_try = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status_file = worker_status_dir(self.routing_file) / f"{os.getpid()}.json"
        self.started_at = time.time()

    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._loop, name="routing-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self.status_file.unlink(missing_ok=True)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.check()
            except Exception:  # never let the watcher die; the next poll tries again
                log.exception("routing watcher failed")

    def check(self) -> bool:
        """Swap if the file changed (or nothing is live yet and a retry is due). True when swapped."""
        identity = file_identity(self.routing_file)
        retry = self.live is None and time.monotonic() - self._last_try >= RETRY_S
        if identity is None or (identity == self._identity and not retry):
            return False
        self._identity = identity
        self._last_try = time.monotonic()
        try:
            routing = read_routing(self.routing_file)
        except (OSError, ValueError, KeyError) as exc:
            self._fail(None, f"unreadable routing file: {exc}")
            return False
        if self.live is not None and routing == self.live.routing:
            self.failed_fingerprint, self.error = None, None  # e.g. the daemon put the live routing back
            self.write_status()  # acknowledges this file (its identity), so the daemon stops waiting
            return False
        try:
            new = self._load(routing)
        except Exception as exc:  # keep serving the previous routing
            self._fail(routing.fingerprint, f"{type(exc).__name__}: {exc}")
            return False
        old, self.live = self.live, new
        self.swaps += 1
        self.failed_fingerprint, self.error = None, None
        self._on_swap(old, new)
        self.write_status()
        log.info("routing %s live: %s", routing.fingerprint[:12], ", ".join(f"{v.name}={v.weight:.3f}" for v in routing.variants))
        return True

    def _load(self, routing: Routing) -> Live:
        if not routing.live_variants:
            raise ValueError("routing has no variant with a positive weight")
        previous = self.live.variants if self.live else {}
        variants: dict[str, LoadedVariant] = {}
        for variant in routing.variants:
            predictor = self._predictor(variant.model_tag)
            old = previous.get(variant.name)
            if old is not None and old.tag == variant.model_tag and old.batcher is not None and self._same_batching(routing):
                batcher = old.batcher  # keep its queue: no request is re-routed
            else:
                batcher = self._make_batcher(variant.name, predictor, {**routing.settings, "service_name": routing.service})
            variants[variant.name] = LoadedVariant(variant.name, variant.model_tag, predictor, dict(predictor.feature_schema), batcher)
        known = frozenset(name for v in routing.live_variants for name in variants[v.name].schema)
        return Live(routing, variants, known, dict(routing.settings))

    def _same_batching(self, routing: Routing) -> bool:
        return self.live is not None and self.live.settings.get("batching") == routing.settings.get("batching")

    def _predictor(self, tag: str) -> Any:
        if tag in self._cache:
            self._cache.move_to_end(tag)
            return self._cache[tag]
        predictor = self._load_predictor(tag)
        self._cache[tag] = predictor
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return predictor

    def _fail(self, fingerprint: str | None, error: str) -> None:
        self.failed_fingerprint, self.error = fingerprint, error
        log.error("routing %s not applied, previous routing stays live: %s", (fingerprint or "?")[:12], error)
        self.write_status()

    def status(self) -> dict[str, Any]:
        live = self.live
        return {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "updated_at": time.time(),
            "ready": live is not None,
            "applied_fingerprint": live.routing.fingerprint if live else None,
            "revision": live.routing.revision if live else None,
            "variants": [
                {"name": v.name, "model_tag": v.model_tag, "weight": v.weight, "role": v.role} for v in live.routing.variants
            ] if live else [],
            "seen": list(self._identity) if self._identity else None,  # identity of the last routing file processed
            "failed_fingerprint": self.failed_fingerprint,
            "error": self.error,
            "degraded": self.error is not None,
            "swaps": self.swaps,
        }

    def write_status(self) -> None:
        try:
            write_json_atomic(self.status_file, self.status(), mode=0o644)
        except OSError:
            log.exception("could not write worker status %s", self.status_file)
