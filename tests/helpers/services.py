"""Helpers for the services tests and benchmark: real models, releases, a deployed A/B service, load.

Imported explicitly (`from tests.helpers import services`) by `test_services_*.py` and by
`tests/bench/bench_services.py`; the shared conftest belongs to the lead.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.adapters.base import AdapterContext
from daemon.adapters.services.adapter import ServiceAdapter
from daemon.core.graph import Resource
from daemon.core.plan import Action, Op
from daemon.schema.environment import EnvironmentSpec
from daemon.schema.service import ServiceSpec
from daemon.shared.paths import bentoml_home

FEATURES = {"bill_length_mm": "float64", "flipper_length_mm": "float64", "year": "int64", "island": "string"}
ROW = {"bill_length_mm": 39.1, "flipper_length_mm": 181.0, "year": 2008, "island": "v1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_models(home: Path, names: tuple[str, ...] = ("a", "b")) -> dict[str, str]:
    """Small real models (fitted preprocessing + seeded network) in the home's BentoML store."""
    from flows.training.artifact import make_test_model

    store = bentoml_home(home)
    return {name: make_test_model("penguin_sex", name, features=FEATURES, seed=i, root=store) for i, name in enumerate(names)}


def release(home: Path, fingerprint: str, champion: str, challengers: tuple[str, ...] = ()) -> None:
    """Make a release current, as the models adapter does after training or on a revert."""
    from flows.training.registry import Release, write_release

    write_release(Release("penguin_sex", fingerprint, champion, challengers, "test", "sha"), root=bentoml_home(home))


def service_spec(port: int, **overrides: Any) -> ServiceSpec:
    data: dict[str, Any] = {
        "model": "penguin_sex",
        "variants": [{"name": "champion", "role": "champion", "weight": 90}, {"name": "challenger", "role": "challenger", "weight": 10}],
        "routing": {"sticky_field": "user_id"},
        "port": port,
        "workers": 2,
        "max_request_rows": 16,
        "prediction_log": {"enabled": True, "flush_interval_s": 0.2},
    }
    data.update(overrides)
    return ServiceSpec.model_validate(data)


def resource(spec: ServiceSpec, fingerprint: str, name: str = "penguin_api") -> Resource:
    return Resource(f"service/{name}", "service", name, f"specs/services/{name}.yaml", spec,
                    spec.model_dump(mode="json"), ("model/penguin_sex",), fingerprint, 1)


def adapter(home: Path, revision: str = "rev1") -> ServiceAdapter:
    return ServiceAdapter(AdapterContext(EnvironmentSpec(name="test"), home, home, revision))


def deploy(service_adapter: ServiceAdapter, res: Resource, op: Op = Op.UPDATE) -> Any:
    return service_adapter.apply(Action("service", res.name, op, "test", res.fingerprint), res)


@dataclass
class LoadLoop:
    """A bounded closed-loop load: `threads` clients until stopped or `max_s` elapsed."""

    url: str
    threads: int = 4
    max_s: float = 60.0
    statuses: Counter = field(default_factory=Counter)
    served: list[tuple[float, str, str]] = field(default_factory=list)  # (time, variant, model_version)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]

    def __enter__(self) -> LoadLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, index: int) -> None:
        import httpx

        deadline = time.monotonic() + self.max_s
        with httpx.Client(timeout=10) as client:
            i = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                i += 1
                try:
                    response = client.post(self.url, json={"features": ROW, "user_id": f"t{index}-{i}"})
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                self.statuses[response.status_code] += 1
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                else:
                    body = response.json()
                    self.served.append((time.monotonic(), body["variant"], body["model_version"]))
