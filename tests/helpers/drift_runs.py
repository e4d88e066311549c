"""A monitored model's drift check without training, for the drift-flow-run test and benchmark.

The check reads only the release's lineage (table URI, Delta version) and the prediction log, so a
release written by hand against a real Delta table is enough to run the real check.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from daemon.adapters.base import AdapterContext
from daemon.core.graph import Resource
from flows.training import registry
from tests.helpers.models import GOLD, context, gold_uri, model_resource, small_spec, write_penguin_table

NAME = "penguin_sex"
FEATURES = ("species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year")
MONITORING = {"drift_share": 0.1, "interval_s": 3600, "window": {"min_rows": 200}, "service": "penguin_api"}


@dataclass(frozen=True)
class Monitored:
    ctx: AdapterContext
    resource: Resource
    release: registry.Release


def monitored(home: Path, run_monitor: Any = None) -> Monitored:
    """The penguin table at Delta version 0, a release of it, and a context with `run_monitor` set."""
    write_penguin_table(gold_uri(home))
    revision = uuid.uuid4().hex + "00000000"  # the runs of this setup, apart from the Prefect server's others
    ctx = replace(context(home, revision=revision), run_monitor=run_monitor)
    resource = model_resource(small_spec(monitoring=MONITORING))
    release = registry.Release(NAME, resource.fingerprint, f"{NAME}:champion1", (), "test", revision, created_at=time.time() - 60,
                               data={"table": GOLD, "uri": gold_uri(home), "delta_version": 0})
    return Monitored(ctx, resource, release)


def write_log(home: Path, tag: str, shift_mm: float, rows: int = 600, seed: int = 7) -> None:
    """`rows` logged predictions of `tag`, features drawn from the training table (bill length + shift_mm)."""
    from deltalake import DeltaTable, write_deltalake

    from bentos.ab_report import rows_to_tables

    table = DeltaTable(gold_uri(home)).to_pyarrow_table().to_pylist()
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    logged = []
    for i, index in enumerate(rng.integers(0, len(table), rows)):
        source = table[int(index)]
        features: dict[str, Any] = {name: source[name] for name in FEATURES}
        features["bill_length_mm"] += shift_mm
        logged.append({"request_id": f"r{i}", "row": 0, "ts": now, "service": "penguin_api", "variant": "champion", "model_tag": tag,
                       "prediction": str(source["is_male"]), "probability": 0.5, "latency_ms": 1.0, "features": json.dumps(features)})
    predictions, _ = rows_to_tables(logged, [])
    write_deltalake(str(home / "lake" / "predictions" / "penguin_api"), predictions, mode="overwrite")


def post(api: str, path: str, body: dict[str, Any]) -> Any:
    """One Prefect REST call (no prefect import)."""
    import urllib.request

    request = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def check_runs(api: str, revision: str) -> list[dict[str, Any]]:
    """The `specd-drift-check` flow runs tagged with this revision."""
    from daemon.adapters.models.drift import CHECK_FLOW

    return post(api, "/flow_runs/filter", {"flows": {"name": {"any_": [CHECK_FLOW]}},
                                           "flow_runs": {"tags": {"all_": ["specd", f"revision:{revision[:12]}"]}}})


def run_artifacts(api: str, run_id: str) -> list[dict[str, Any]]:
    return post(api, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
