"""Fixtures for the model tests: a real penguin Delta table, model resources and a plan→apply driver.

Imported explicitly by `test_models_*.py` files (the shared conftest belongs to the lead).
"""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path
from typing import Any

import yaml

from daemon.adapters.base import AdapterContext
from daemon.core.graph import Resource, fingerprint
from daemon.core.plan import CHANGING, Plan, make_plan
from daemon.schema.environment import EnvironmentSpec, TrainingSection
from daemon.schema.model import ModelSpec

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "specs" / "models" / "penguin_sex.yaml"
GOLD = "gold_penguin_features"


def write_penguin_table(uri: str | Path, rows: int | None = None) -> None:
    """gold_penguin_features as the tables helper builds it, from the palmerpenguins package's CSV."""
    import polars as pl
    from deltalake import write_deltalake

    csv = importlib.resources.files("palmerpenguins").joinpath("data/penguins.csv")
    frame = pl.read_csv(str(csv), null_values="NA").filter(pl.col("sex").is_not_null()).with_row_index("penguin_id")
    frame = frame.select(
        pl.col("penguin_id").cast(pl.Int64), "species", "island",
        *[pl.col(c).cast(pl.Float64) for c in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")],
        pl.col("year").cast(pl.Int64), (pl.col("sex") == "male").cast(pl.Int64).alias("is_male"),
    )
    if rows:
        frame = frame.head(rows)
    write_deltalake(str(uri), frame.to_arrow(), mode="overwrite")


def gold_uri(home: Path) -> str:
    """Where the tables kind keeps gold_penguin_features under the default storage root (`<home>/lake`)."""
    from flows.tables import table_uri

    return table_uri(str(home / "lake"), GOLD)


def example_spec() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def small_spec(**changes: Any) -> dict[str, Any]:
    """The example, cut down for fast tests: one MLP candidate, few epochs, no drift monitoring (tests that
    need it pass `monitoring=...`)."""
    data = copy.deepcopy(example_spec())
    data["trainer"]["epochs"] = 15
    data["candidates"] = {"a": []}
    data.pop("monitoring", None)
    for dotted, value in changes.items():
        node = data
        *head, last = dotted.split("__")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    return data


def model_resource(data: dict[str, Any], name: str = "penguin_sex", path: str = "specs/models/penguin_sex.yaml") -> Resource:
    spec = ModelSpec.model_validate(data)
    normalised = spec.model_dump(mode="json", by_alias=True)
    fp = fingerprint("model", name, normalised, {f"table/{GOLD}": "table-fp"}, "model/1")
    return Resource(f"model/{name}", "model", name, path, spec, normalised, (f"table/{GOLD}",), fp, 1)


def context(home: Path, repo_dir: Path = REPO, revision: str = "rev1", **training: Any) -> AdapterContext:
    env = EnvironmentSpec(name="test", training=TrainingSection(**training))
    return AdapterContext(env=env, home=home, repo_dir=repo_dir, revision=revision)


def plan_and_apply(adapter: Any, resources: list[Resource], revision: str = "rev") -> tuple[Plan, list[Any]]:
    """observe → plan → apply every changing action, like one daemon cycle for the model kind."""
    from daemon.core.graph import Graph

    observed = adapter.observe(resources)
    plan = make_plan(revision, "test", Graph(tuple(resources)), observed, describe=adapter.describe)
    by_key = {r.key: r for r in resources}
    outcomes = [adapter.apply(a, by_key.get(a.key)) for a in plan.actions if a.op in CHANGING]
    return plan, outcomes
