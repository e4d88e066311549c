"""Privacy by default: personal-looking columns without a privacy declaration are a validate warning, and
an error under `privacy.require_declared` (prod); the detectors by name and by value (Luhn, IBAN mod-97)."""

from __future__ import annotations

import pytest

from daemon.adapters.tables.adapter import TableAdapter
from flows.tables.pii_detect import iban_ok, luhn_ok, name_kind, sample_kind, value_kind
from tests.helpers.tables import TableWorld


@pytest.mark.parametrize(("column", "kind"), [
    ("customer_email", "e-mail"), ("EmailAddress", "e-mail"), ("phone_number", "phone"), ("name", "name"),
    ("first_name", "name"), ("customer_name", "name"), ("billing_address", "address"), ("ssn", "national id"),
    ("iban", "IBAN"), ("card_number", "card number"), ("ip", "IP address"), ("client_ip", "IP address"),
    ("dob", "date of birth"), ("date_of_birth", "date of birth"),
    ("shipping", None), ("zipper", None), ("service_name", None), ("species", None), ("island", None),
    ("description", None), ("amount", None), ("pipeline", None),
])
def test_name_detection(column: str, kind: str | None) -> None:
    assert name_kind(column) == kind


def test_luhn_and_iban_checks_reject_near_misses() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and iban_ok("DE89370400440532013000")
    assert not iban_ok("GB82 WEST 1234 5698 7654 33") and not iban_ok("DE89370400440532013001")


@pytest.mark.parametrize(("value", "kind"), [
    ("ann@example.org", "e-mail"), ("4111 1111 1111 1111", "card number"), ("5500-0000-0000-0004", "card number"),
    ("GB82WEST12345698765432", "IBAN"), ("123-45-6789", "national id"), ("AB123456C", "national id"),
    ("192.168.10.7", "IP address"), ("2001:db8::1", "IP address"), ("+49 151 12345678", "phone"),
    ("(555) 010-9999", "phone"),
    ("4111 1111 1111 1112", None), ("GB82WEST12345698765433", None), ("not-an-email@", None),
    ("3.14", None), ("2024-03-02", None), ("1.2.3", None), ("hello world", None), ("12345", None),
])
def test_value_detection(value: str, kind: str | None) -> None:
    assert value_kind(value) == kind


def test_sample_needs_most_values_to_match() -> None:
    assert sample_kind(["a@x.org", "b@y.com", "", None, "c@z.net"]) == "e-mail"
    assert sample_kind(["free text", "mail me at a@x.org", "more text", "b@y.com"]) is None
    assert sample_kind(["4111111111111112", "4111111111111113"]) is None  # Luhn fails: not card numbers


def _contacts(world: TableWorld, privacy: str = "") -> None:
    world.write("data/contacts.csv", "contact_id,customer_email,segment\n1,a@x.org,a\n")
    world.write("specs/tables/contacts.yaml", "layer: bronze\nsource: {type: file, path: data/contacts.csv, format: csv}\n" + privacy)
    world.write("specs/tables/contact_segments.yaml", """
        layer: silver
        source: {type: table, inputs: [contacts]}
        features:
          columns: {domain: "split_part(customer_email, '@', 2)"}
          drop: [customer_email]
        """)


def _adapter(world: TableWorld, require: bool) -> tuple[TableAdapter, list]:
    graph, ctx = world.graph()
    env = ctx.env.model_copy(update={"privacy": ctx.env.privacy.model_copy(update={"require_declared": require})})
    ctx = type(ctx)(env=env, home=ctx.home, repo_dir=ctx.repo_dir, revision=ctx.revision)
    return TableAdapter(ctx), list(graph.resources)


def test_undeclared_personal_column_is_a_warning_by_default(world: TableWorld) -> None:
    _contacts(world)
    adapter, resources = _adapter(world, require=False)
    assert not [i for i in adapter.check(resources, None) if "personal data" in i.message]
    warnings = [str(w) for w in adapter.warnings(resources)]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("specs/tables/contacts.yaml:2: source: column 'customer_email' looks like personal data (e-mail)")


def test_undeclared_personal_column_is_an_error_under_require_declared(world: TableWorld) -> None:
    _contacts(world)
    adapter, resources = _adapter(world, require=True)
    errors = [str(i) for i in adapter.check(resources, None) if "personal data" in i.message]
    assert errors == [w for w in errors if w.startswith("specs/tables/contacts.yaml:2: source: column 'customer_email'")]
    assert len(errors) == 1 and adapter.warnings(resources) == []


def test_a_declaration_upstream_covers_the_downstream_table(world: TableWorld) -> None:
    _contacts(world, "privacy:\n  columns:\n    customer_email: {mode: mask, keep_first: 1, keep_last: 4}\n")
    adapter, resources = _adapter(world, require=True)
    assert [str(i) for i in adapter.check(resources, None) if "personal data" in i.message] == []


def test_the_example_specs_declare_their_personal_columns(examples: TableWorld) -> None:
    adapter, resources = _adapter(examples, require=True)
    assert [str(i) for i in adapter.check(resources, None) if "personal data" in i.message] == []
    assert "privacy" in (examples.repo / "specs" / "tables" / "bronze_orders.yaml").read_text()
