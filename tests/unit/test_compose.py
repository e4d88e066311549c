"""compose: Hydra-style spec loading, validation into typed models, and file:line errors."""

from __future__ import annotations

import pytest

from daemon.core.compose import compose
from daemon.core.graph import build_graph
from daemon.shared.errors import SpecErrors

RAW = """
source:
  type: file
  path: data/orders.csv
  format: csv
"""


def tables(composed):
    return {d.name: d for d in composed.docs if d.kind == "table"}


def errors_of(repo, env="dev", overrides=()):
    with pytest.raises(SpecErrors) as info:
        compose(repo.path, env, overrides)
    return [str(i) for i in info.value.issues]


def test_valid_spec_composes_into_typed_model(spec_repo):
    spec_repo.write("specs/tables/orders.yaml", RAW)
    doc = tables(compose(spec_repo.path, "dev"))["orders"]
    assert doc.spec.source.path == "data/orders.csv"
    assert doc.data["write"]["mode"] == "overwrite"  # defaults are filled in the normalised data
    assert doc.path == "specs/tables/orders.yaml"


def test_defaults_list_merges_presets_below_the_file(spec_repo):
    spec_repo.write("specs/presets/bronze.yaml", "layer: bronze\nretention:\n  vacuum_hours: 24\n")
    spec_repo.write("specs/tables/orders.yaml", "defaults: [presets/bronze]\nretention:\n  vacuum_hours: 48\n" + RAW)
    spec = tables(compose(spec_repo.path, "dev"))["orders"].spec
    assert spec.layer == "bronze"
    assert spec.retention.vacuum_hours == 48  # _self_ last: the file wins over the preset


def test_self_first_lets_the_preset_win(spec_repo):
    spec_repo.write("specs/presets/long.yaml", "retention:\n  vacuum_hours: 999\n")
    spec_repo.write("specs/tables/orders.yaml", "defaults: [_self_, presets/long]\nretention:\n  vacuum_hours: 48\n" + RAW)
    assert tables(compose(spec_repo.path, "dev"))["orders"].spec.retention.vacuum_hours == 999


def test_interpolation_sees_the_environment(spec_repo):
    spec_repo.write("specs/tables/orders.yaml", "description: lake at ${env.storage.root} for ${env.name}\n" + RAW)
    assert tables(compose(spec_repo.path, "staging"))["orders"].spec.description == "lake at lake for staging"


def test_oc_env_with_default_and_override(spec_repo, monkeypatch):
    monkeypatch.delenv("ORDERS_LAYER", raising=False)
    spec_repo.write("specs/tables/orders.yaml", "layer: ${oc.env:ORDERS_LAYER,silver}\n" + RAW)
    assert tables(compose(spec_repo.path, "dev"))["orders"].spec.layer == "silver"
    monkeypatch.setenv("ORDERS_LAYER", "gold")
    assert tables(compose(spec_repo.path, "dev"))["orders"].spec.layer == "gold"
    composed = compose(spec_repo.path, "dev", ["tables.orders.layer=bronze", "env.daemon.poll_interval_s=2"])
    assert tables(composed)["orders"].spec.layer == "bronze"
    assert composed.env.daemon.poll_interval_s == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("source:\n  type: file\n  path: [unclosed\n", "specs/tables/bad.yaml:3: YAML syntax error"),
        (RAW + "write:\n  mode: sideways\n", "specs/tables/bad.yaml:6: write.mode: Input should be 'overwrite', 'merge' or 'append'"),
        (RAW + "colour: blue\n", "specs/tables/bad.yaml:5: colour: Extra inputs are not permitted"),
        ("source:\n  type: file\n  path: ../../etc/passwd\n  format: csv\n", "specs/tables/bad.yaml:3: source.path: Value error, '../../etc/passwd' escapes its root"),
        (RAW + "write:\n  mode: merge\n", "specs/tables/bad.yaml:5: write: Value error, write.mode 'merge' needs write.keys"),
        ("description: ${env.nope}\n" + RAW, "specs/tables/bad.yaml:1: description: interpolation"),
    ],
)
def test_errors_name_file_line_and_field(spec_repo, text, expected):
    spec_repo.write("specs/tables/bad.yaml", text)
    messages = errors_of(spec_repo)
    assert any(m.startswith(expected) for m in messages), messages


def test_every_error_of_a_revision_is_reported_at_once(spec_repo):
    spec_repo.write("specs/tables/one.yaml", "source: [\n")
    spec_repo.write("specs/tables/two.yaml", RAW + "retention:\n  vacuum_hours: soon\n")
    spec_repo.write("specs/tables/three.yaml", RAW + "layer: platinum\n")
    messages = errors_of(spec_repo)
    assert [m.split(":")[0] for m in messages] == ["specs/tables/one.yaml", "specs/tables/three.yaml", "specs/tables/two.yaml"]
    assert "specs/tables/two.yaml:6: retention.vacuum_hours" in messages[2]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("password: hunter2", "looks like a credential literal"),
        ("description: postgresql://app:s3cret@db.internal/orders", "URL with an embedded password"),
        ("description: key AKIAABCDEFGHIJKLMNOP", "AWS access key"),
    ],
)
def test_credential_literals_are_errors(spec_repo, line, fragment):
    spec_repo.write("specs/tables/leaky.yaml", RAW + line + "\n")
    messages = errors_of(spec_repo)
    assert any(fragment in m and m.startswith("specs/tables/leaky.yaml:5") for m in messages), messages


def test_oc_env_refuses_secret_variables(spec_repo, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    spec_repo.write("specs/tables/orders.yaml", "description: ${oc.env:DB_PASSWORD}\n" + RAW)
    messages = errors_of(spec_repo)
    assert any("use ${secret:DB_PASSWORD}" in m for m in messages), messages
    assert not any("hunter2" in m for m in messages)


def test_duplicate_names_across_subdirectories(spec_repo):
    spec_repo.write("specs/tables/sales/orders.yaml", RAW)
    spec_repo.write("specs/tables/crm/orders.yaml", RAW)
    messages = errors_of(spec_repo)
    assert any("duplicate table name 'orders'" in m for m in messages), messages


def test_missing_preset_and_unknown_environment(spec_repo):
    spec_repo.write("specs/tables/orders.yaml", "defaults: [presets/nope]\n" + RAW)
    assert any("preset specs/presets/nope.yaml not found" in m for m in errors_of(spec_repo))
    assert any("environment 'qa' not found (have: base, dev, prod, staging)" in m for m in errors_of(spec_repo, env="qa"))


def test_malformed_override_is_an_error(spec_repo):
    spec_repo.write("specs/tables/orders.yaml", RAW)
    assert any("malformed override" in m for m in errors_of(spec_repo, overrides=["tables.orders.layer=[unclosed"]))


def test_comments_order_and_explicit_defaults_do_not_change_the_fingerprint(spec_repo):
    spec_repo.write("specs/tables/orders.yaml", RAW)
    first = build_graph(compose(spec_repo.path, "dev")).by_key()["table/orders"].fingerprint
    spec_repo.write(
        "specs/tables/orders.yaml",
        "# the orders feed\nwrite: {mode: overwrite}   # default, written out\nsource: {format: csv, path: data/orders.csv, type: file}\n",
    )
    second = build_graph(compose(spec_repo.path, "dev")).by_key()["table/orders"].fingerprint
    assert first == second
    spec_repo.write("specs/tables/orders.yaml", RAW + "partition_by: [day]\n")
    assert build_graph(compose(spec_repo.path, "dev")).by_key()["table/orders"].fingerprint != first


def test_secret_references_stay_markers(spec_repo, monkeypatch):
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_supersecretvalue_1234567890")
    composed = compose(spec_repo.path, "staging")
    assert composed.env.grafana.token == "secret:GRAFANA_TOKEN"
