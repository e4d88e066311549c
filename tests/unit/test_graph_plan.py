"""graph and plan: references, cycles, waves, fingerprints, and the pure diff (table-driven + golden)."""

from __future__ import annotations

import json

import pytest

from daemon.core.compose import compose
from daemon.core.graph import build_graph
from daemon.core.plan import Op, make_plan, property_diff
from daemon.core.state import Observed
from daemon.shared.errors import SpecErrors

FILE = "source: {type: file, path: data/x.csv, format: csv}\n"


def sql(*inputs: str) -> str:
    return "source:\n  type: table\n  inputs: [" + ", ".join(inputs) + "]\n  sql: select 1 as one\n"


def graph_of(repo):
    return build_graph(compose(repo.path, "dev"), read_text=lambda rel: (repo.path / rel).read_text())


def test_waves_follow_dependencies_and_fingerprints_chain(spec_repo):
    spec_repo.write("specs/tables/raw.yaml", FILE)
    spec_repo.write("specs/tables/clean.yaml", sql("raw"))
    spec_repo.write("specs/tables/gold.yaml", sql("clean", "raw"))
    graph = graph_of(spec_repo)
    tables = [r for r in graph.resources if r.kind == "table"]
    assert [(r.name, r.wave) for r in tables] == [("raw", 0), ("clean", 1), ("gold", 2)]
    assert graph.by_key()["table/gold"].depends_on == ("table/clean", "table/raw")
    assert graph.dependents("table/raw") >= {"table/clean", "table/gold"}
    before = {r.key: r.fingerprint for r in tables}
    spec_repo.write("specs/tables/raw.yaml", FILE + "partition_by: [x]\n")
    after = {r.key: r.fingerprint for r in graph_of(spec_repo).resources if r.kind == "table"}
    # Tables consume their upstreams' *data*: a shaping change of raw changes raw's fingerprint only;
    # clean and gold follow through their build keys (upstream data ids), not their fingerprints.
    assert before["table/raw"] != after["table/raw"]
    assert before["table/clean"] == after["table/clean"] and before["table/gold"] == after["table/gold"]
    # A metadata-only edit (description, owners, tags) changes no fingerprint at all.
    spec_repo.write("specs/tables/raw.yaml", FILE + "partition_by: [x]\ndescription: raw rows\nowners: [ana]\ntags: [pii]\n")
    metadata_only = {r.key: r.fingerprint for r in graph_of(spec_repo).resources if r.kind == "table"}
    assert metadata_only == after


def test_unknown_reference_names_the_line(spec_repo):
    spec_repo.write("specs/tables/clean.yaml", "# comment\n" + sql("raw", "nope"))
    with pytest.raises(SpecErrors) as info:
        graph_of(spec_repo)
    messages = [str(i) for i in info.value.issues]
    assert "specs/tables/clean.yaml:4: source.inputs.0: unknown table 'raw'" in messages
    assert "specs/tables/clean.yaml:4: source.inputs.1: unknown table 'nope'" in messages


def test_cycles_are_rejected_with_the_cycle(spec_repo):
    spec_repo.write("specs/tables/a.yaml", sql("b"))
    spec_repo.write("specs/tables/b.yaml", sql("a"))
    with pytest.raises(SpecErrors) as info:
        graph_of(spec_repo)
    assert any("dependency cycle: table/a -> table/b -> table/a" in str(i) for i in info.value.issues)


def obs(fp=None, *, restorable=None, prune=None, health="Healthy"):
    return Observed(True, fp, "abc", health, restorable=restorable or {}, prune=prune)


@pytest.fixture
def two_tables(spec_repo):
    spec_repo.write("specs/tables/raw.yaml", FILE)
    spec_repo.write("specs/tables/clean.yaml", sql("raw"))
    graph = graph_of(spec_repo)
    tables = type(graph)(tuple(r for r in graph.resources if r.kind == "table"))
    return tables, {r.name: r.fingerprint for r in tables.resources}


@pytest.mark.parametrize(
    ("observed", "env_prune", "expected"),
    [
        (lambda fp: {}, False, {"raw": Op.CREATE, "clean": Op.CREATE}),
        (lambda fp: {"table/raw": obs(fp["raw"]), "table/clean": obs(fp["clean"])}, False, {"raw": Op.UNCHANGED, "clean": Op.UNCHANGED}),
        (lambda fp: {"table/raw": obs("old"), "table/clean": obs(fp["clean"])}, False, {"raw": Op.UPDATE, "clean": Op.UPDATE}),  # clean follows raw
        (lambda fp: {"table/raw": obs("old", restorable={fp["raw"]: "version 3"}), "table/clean": obs("x")}, False, {"raw": Op.RESTORE, "clean": Op.UPDATE}),
        (lambda fp: {"table/raw": obs(fp["raw"]), "table/clean": obs(fp["clean"]), "table/gone": obs("z")}, False, {"gone": Op.ORPHAN}),
        (lambda fp: {"table/raw": obs(fp["raw"]), "table/clean": obs(fp["clean"]), "table/gone": obs("z")}, True, {"gone": Op.DELETE}),
        (lambda fp: {"table/raw": obs(fp["raw"]), "table/clean": obs(fp["clean"]), "table/gone": obs("z", prune=False)}, True, {"gone": Op.ORPHAN}),
        (lambda fp: {"table/raw": obs(fp["raw"]), "table/clean": obs(fp["clean"]), "table/gone": obs("z", prune=True)}, False, {"gone": Op.DELETE}),
    ],
    ids=["create", "unchanged", "update", "restore", "orphan", "prune-env", "prune-off-recorded", "prune-on-recorded"],
)
def test_plan_ops(two_tables, observed, env_prune, expected):
    graph, fps = two_tables
    plan = make_plan("f" * 40, "dev", graph, observed(fps), env_prune=env_prune)
    ops = {a.name: a.op for a in plan.actions}
    for name, op in expected.items():
        assert ops[name] == op


GOLDEN = """\
specd plan for 123456789012 (env dev), against base abcdefabcdef

  < table raw    restore    an earlier build matches (Delta version 3); no recompute — restore Delta version 3
  ~ table clean  update     spec changed — rebuild
      layer: "other" → "silver"
  ! table gone   orphan     spec removed; kept because prune is off

Plan: 1 to update, 1 to restore, 1 orphaned (kept), 0 unchanged."""


def test_golden_plan_text_and_json(two_tables):
    graph, fps = two_tables
    observed = {"table/raw": obs("old", restorable={fps["raw"]: "Delta version 3"}), "table/clean": obs("x"), "table/gone": obs("z")}
    plan = make_plan(
        "1234567890" * 4, "dev", graph, observed,
        describe=lambda a, r, live: "restore Delta version 3" if a.op == Op.RESTORE else "rebuild",
        base_revision="abcdef" * 6,
        property_changes={"table/clean": ('layer: "other" → "silver"',)},
    )
    assert plan.to_text() == GOLDEN
    data = json.loads(json.dumps(plan.to_json()))
    assert data["revision"] == "1234567890" * 4
    assert [(a["kind"], a["name"], a["op"]) for a in data["actions"]] == [("table", "raw", "restore"), ("table", "clean", "update"), ("table", "gone", "orphan")]
    assert all({"kind", "name", "op", "reason"} <= set(a) for a in data["actions"])


def test_no_changes_text(two_tables):
    graph, fps = two_tables
    plan = make_plan("a" * 40, "dev", graph, {"table/raw": obs(fps["raw"]), "table/clean": obs(fps["clean"])})
    assert not plan.has_changes
    assert "No changes. The live systems match the specs." in plan.to_text()


def test_property_diff():
    assert property_diff({"a": 1, "b": {"c": [1]}}, {"a": 1, "b": {"c": [1, 2]}, "d": "x"}) == ["b.c: [1] → [1, 2]", 'd: (unset) → "x"']


def test_property_diff_of_named_lists_is_per_item():
    old = {"variants": [{"name": "champion", "weight": 90}, {"name": "challenger", "weight": 10}]}
    new = {"variants": [{"name": "champion", "weight": 80}, {"name": "challenger", "weight": 20}, {"name": "c", "weight": 5}]}
    assert property_diff(old, new) == [
        'variants[c]: (unset) → {"name": "c", "weight": 5}',
        "variants[challenger].weight: 10 → 20",
        "variants[champion].weight: 90 → 80",
    ]


def test_unknown_references_are_reported_with_schema_errors(spec_repo):
    from daemon.runtime.reconcile import load_desired

    spec_repo.write("specs/tables/raw.yaml", FILE + "layer: platinum\n")  # invalid: reported by compose
    spec_repo.write("specs/tables/clean.yaml", sql("raw"))  # refers to the broken one: not "unknown"
    spec_repo.write("specs/tables/gold.yaml", "# gold\n" + sql("nope"))  # unknown: reported at once
    with pytest.raises(SpecErrors) as info:
        load_desired(spec_repo.path, "dev", "rev")
    messages = [str(i) for i in info.value.issues]
    assert any(m.startswith("specs/tables/raw.yaml:2: layer:") for m in messages), messages
    assert "specs/tables/gold.yaml:4: source.inputs.0: unknown table 'nope'" in messages
    assert not any("unknown table 'raw'" in m for m in messages)
