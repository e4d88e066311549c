"""Helpers for the four-journeys e2e tests and the revert benchmark: the example stack in a temp repo,
a service port the daemon will pick, a bounded load loop on 127.0.0.1, and release/journal readers.

Imported explicitly by `tests/e2e/test_journeys.py` and `tests/bench/bench_revert.py` (the shared
conftests belong to the lead). The example specs are copied from the project and shrunk only where
training time is spent (fewer epochs, no baseline candidate, two candidates trained at once), by a
commit in the temp repo — the same kind of change a user would make.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from daemon.schema.service import default_port
from tests.conftest import ROOT, SpecRepo

MODEL_SPEC = "specs/models/penguin_sex.yaml"
SERVICE_SPEC = "specs/services/penguin_api.yaml"
MODEL, SERVICE = "penguin_sex", "penguin_api"
# One penguin of the shipped CSV (its first row): every feature column of gold_penguin_features.
PENGUIN = {"species": "Adelie", "island": "Torgersen", "bill_length_mm": 39.1, "bill_depth_mm": 18.7,
           "flipper_length_mm": 181.0, "body_mass_g": 3750.0, "year": 2007}
# A rollback test needs a forward change that deterministically promotes a new champion. The example
# promotes by roc_auc, which saturates near 0.98 on an 83-row holdout: five epochs sometimes beat forty.
# Log loss separates them by far more than the 0.005 margin (measured: 0.22–0.31 at 5 epochs, 0.12–0.15
# at 10–40), so the test spec promotes by log loss. The island demographic-parity guardrail is dropped:
# which penguins land in the holdout depends on the gold table's row order, which a rebuild does not
# keep, and a well-trained model's parity difference sits at 0.20–0.23, next to the 0.25 bound.
SHRUNK_EPOCHS = 5
PENGUIN_ONLY = ("bronze_penguins", "silver_penguins", "gold_penguin_features")


def read_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def dump_yaml(data: dict[str, Any], comment: str) -> str:
    return f"# {comment}\n" + yaml.safe_dump(data, sort_keys=False, width=1000)


def example_epochs() -> int:
    return int(read_yaml(ROOT / MODEL_SPEC)["trainer"]["epochs"])


def model_spec(epochs: int) -> str:
    """The example model with `epochs`, candidates a and b, promoted by log loss (see above)."""
    spec = read_yaml(ROOT / MODEL_SPEC)
    spec["trainer"]["epochs"] = epochs
    spec["candidates"].pop("logistic", None)
    spec["promotion"]["metric"] = "log_loss"
    spec["promotion"].pop("direction", None)
    spec["promotion"]["guardrails"] = [g for g in spec["promotion"].get("guardrails", []) if g.get("attribute") is None]
    return dump_yaml(spec, f"The example model: {epochs} epochs, candidates a and b, promoted by log loss.")


def make_stack_repo(path: Path, *, epochs: int = SHRUNK_EPOCHS, tables: tuple[str, ...] | None = None,
                    dashboards: bool = True) -> SpecRepo:
    """A git repo with the project's environments/ and specs/ committed on main (training shrunk).

    `tables`: keep only these table specs (None: all of them); `dashboards`: keep the custom ones.
    """
    path.mkdir(parents=True)
    repo = SpecRepo(path)
    repo.git("init", "-q", "-b", "main")
    shutil.copytree(ROOT / "environments", path / "environments")
    shutil.copytree(ROOT / "specs", path / "specs")
    if tables is not None:
        for spec in (path / "specs" / "tables").glob("*.yaml"):
            if spec.stem not in tables:
                spec.unlink()
    if not dashboards:
        shutil.rmtree(path / "specs" / "dashboards", ignore_errors=True)
    (path / MODEL_SPEC).write_text(model_spec(epochs))
    dev = read_yaml(path / "environments" / "dev.yaml")
    dev.setdefault("training", {})["max_concurrent_candidates"] = 2  # both candidates at once on 2 cores
    (path / "environments" / "dev.yaml").write_text(dump_yaml(dev, "dev, two candidates trained at once"))
    repo.commit("example stack, training shrunk for tests")
    return repo


def free_service_port(name: str = SERVICE) -> tuple[int, int]:
    """(SPECD_SERVICE_PORT_BASE, port): a base that puts the service's stable default port on a free port."""
    offset = default_port(name, 0)
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if 1024 <= port - offset <= 65000:
            return port - offset, port
    raise RuntimeError("no free port with a valid SPECD_SERVICE_PORT_BASE")


# ---- the model store, as the daemon left it ---------------------------------------------------------
def store_root(home: Path) -> Path:
    return home / "bentoml"


def release(home: Path) -> Any:
    """The current release of the example model (`flows.training.registry.Release`), or None."""
    from flows.training import registry

    return registry.current_release(MODEL, store_root(home))


def stored_models(home: Path) -> set[str]:
    directory = store_root(home) / "models" / MODEL
    return {p.name for p in directory.iterdir() if p.is_dir()} if directory.is_dir() else set()


def training_logs(home: Path) -> dict[str, float]:
    """Training/evaluation logs of the model by name → mtime (a training run rewrites its log)."""
    directory = home / "logs" / "training" / MODEL
    return {p.name: p.stat().st_mtime for p in directory.glob("*.log")} if directory.is_dir() else {}


def routing_of(rel: Any) -> dict[str, str]:
    """variant → model tag that the example service (champion + challenger variants) serves for a release."""
    return {"champion": rel.champion, "challenger": rel.challengers[0] if rel.challengers else rel.champion}


# ---- load --------------------------------------------------------------------------------------------
@dataclass
class Served:
    started: float
    ended: float
    status: int  # 0: no HTTP answer (connection error, timeout)
    variant: str | None
    version: str | None
    error: str | None = None


@dataclass
class LoadLoop:
    """A bounded closed-loop load on one 127.0.0.1 service: `threads` clients, at most `max_requests`
    requests in all and `max_s` seconds, whichever comes first; every answer is recorded."""

    port: int
    threads: int = 3
    max_requests: int = 20_000
    max_s: float = 120.0
    pause_s: float = 0.0
    results: list[Served] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._issued = 0
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]

    def __enter__(self) -> LoadLoop:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(15)

    def _take(self) -> bool:
        with self._lock:
            if self._issued >= self.max_requests:
                return False
            self._issued += 1
            return True

    def _run(self, index: int) -> None:
        import httpx

        deadline = time.monotonic() + self.max_s
        url = f"http://127.0.0.1:{self.port}/predict"
        with httpx.Client(timeout=10) as client:
            n = 0
            while not self._stop.is_set() and time.monotonic() < deadline and self._take():
                n += 1
                started = time.monotonic()
                try:
                    response = client.post(url, json={"features": PENGUIN, "user_id": f"load-{index}-{n}"})
                except httpx.HTTPError as exc:
                    self._record(Served(started, time.monotonic(), 0, None, None, f"{type(exc).__name__}: {exc}"))
                    continue
                body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
                self._record(Served(started, time.monotonic(), response.status_code, body.get("variant"),
                                    body.get("model_version"), None if response.status_code == 200 else response.text[:300]))
                if self.pause_s:
                    time.sleep(self.pause_s)

    def _record(self, served: Served) -> None:
        with self._lock:
            self.results.append(served)

    def snapshot(self) -> list[Served]:
        with self._lock:
            return list(self.results)

    def failures(self) -> list[Served]:
        return [r for r in self.snapshot() if r.status != 200]

    def wait_for(self, predicate, timeout: float, what: str) -> float:
        """Wait until some answer satisfies `predicate`; returns when that answer ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = next((r for r in self.snapshot() if predicate(r)), None)
            if hit is not None:
                return hit.ended
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")


def switch_time(results: list[Served], target: dict[str, str], since: float) -> tuple[float, int, int]:
    """When traffic reached 100 % on `target` (variant → model tag) for good, after `since`.

    Returns (the end of the earliest answer from which every answer to a request started later is on
    `target`, answers on target, answers not on target), over answers to requests started after `since`.
    """
    after = sorted((r for r in results if r.started >= since and r.status == 200), key=lambda r: r.started)
    on = [target.get(r.variant or "") == r.version for r in after]
    last_off = max((i for i, ok in enumerate(on) if not ok), default=-1)
    if last_off == len(after) - 1:
        raise AssertionError(f"traffic never settled on {target}: last answers {[(r.variant, r.version) for r in after[-3:]]}")
    first_for_good = after[last_off + 1]
    return first_for_good.ended, sum(on), len(on) - sum(on)
