"""daemon.shared.storage_uri: option names as delta-rs reads them, unsafe commit modes, the pyarrow S3
mapping, and the local half of the file operations (the S3 half runs against moto in
tests/integration/test_s3_storage.py)."""

from __future__ import annotations

import pytest

from daemon.schema.environment import StorageSection
from daemon.shared import storage_uri


def test_option_lookup_ignores_case_and_the_aws_prefix():
    options = {"aws_endpoint_url": "http://127.0.0.1:9000", "ALLOW_HTTP": "true"}
    assert storage_uri.option(options, "AWS_ENDPOINT_URL") == "http://127.0.0.1:9000"
    assert storage_uri.option(options, "AWS_ALLOW_HTTP") == "true"
    assert storage_uri.option(options, "AWS_REGION") is None and storage_uri.option(None, "X") is None


@pytest.mark.parametrize(("options", "unsafe"), [
    ({}, False),
    ({"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}, True),
    ({"aws_s3_allow_unsafe_rename": "TRUE"}, True),
    ({"AWS_S3_ALLOW_UNSAFE_RENAME": "false"}, False),
    ({"aws_conditional_put": "disabled"}, True),
    ({"conditional_put": "etag"}, False),
    ({"AWS_S3_LOCKING_PROVIDER": "dynamodb"}, True),
])
def test_unsafe_commit_modes(options, unsafe):
    assert (storage_uri.unsafe_commit_mode("s3://b/lake", options) is not None) is unsafe
    assert storage_uri.unsafe_commit_mode("/local/lake", options) is None  # a local root commits atomically


def test_the_schema_refuses_unsafe_modes_unless_single_writer_and_literal_credentials():
    unsafe = {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    with pytest.raises(ValueError, match="single_writer"):
        StorageSection(root="s3://b/lake", storage_options=unsafe)
    assert StorageSection(root="lake", models_uri="s3://b/models", storage_options=unsafe)  # Delta commits only
    assert StorageSection(root="s3://b/lake", storage_options=unsafe, single_writer=True).single_writer
    with pytest.raises(ValueError, match="AWS_SECRET_ACCESS_KEY must be a secret reference"):
        StorageSection(root="s3://b/lake", storage_options={"aws_secret_access_key": "literal"})
    assert StorageSection(root="s3://b/lake", storage_options={"AWS_SECRET_ACCESS_KEY": "secret:S3_KEY"})
    with pytest.raises(ValueError, match="models_uri"):
        StorageSection(models_uri="relative/models")


def test_arrow_s3_kwargs_from_delta_rs_options():
    kwargs = storage_uri.arrow_s3_kwargs({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000/", "AWS_REGION": "eu-west-1",
                                          "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"})
    assert kwargs == {"access_key": "id", "secret_key": "key", "region": "eu-west-1", "scheme": "http",
                      "endpoint_override": "127.0.0.1:9000", "force_virtual_addressing": False}
    assert storage_uri.arrow_s3_kwargs({"endpoint": "minio:9000", "allow_http": "true"})["scheme"] == "http"
    assert storage_uri.arrow_s3_kwargs({"endpoint": "store.example:443"})["scheme"] == "https"
    assert storage_uri.arrow_s3_kwargs({}) == {}


def test_resolve_options_reads_secret_references(monkeypatch):
    monkeypatch.setenv("UNIT_S3_KEY", "resolved-value")
    assert storage_uri.resolve_options({"AWS_SECRET_ACCESS_KEY": "secret:UNIT_S3_KEY", "AWS_REGION": "x"}) == {
        "AWS_SECRET_ACCESS_KEY": "resolved-value", "AWS_REGION": "x"}
    assert storage_uri.resolve_options({}) is None


def test_local_file_operations(tmp_path):
    root = str(tmp_path / "lake")
    assert storage_uri.list_dirs(root) == [] and not storage_uri.exists(root)
    storage_uri.write_bytes(storage_uri.join(root, "t", "_delta_log", "0.json"), b"{}")
    assert storage_uri.list_dirs(root) == ["t"] and storage_uri.exists(f"file://{root}/t")
    assert storage_uri.list_files(storage_uri.join(root, "t"), recursive=True) == {"_delta_log/0.json": 2}
    assert storage_uri.read_bytes(storage_uri.join(root, "t", "_delta_log", "0.json")) == b"{}"
    storage_uri.delete_tree(storage_uri.join(root, "t"))
    assert storage_uri.list_dirs(root) == []


def test_an_unreachable_object_store_is_transient_not_corrupt(world, monkeypatch):
    """Nothing listens on the endpoint: the table is Degraded as 'object store unreachable', the plan says it
    builds once the store answers, and the build fails transient (retried) instead of 'repair the file'."""
    from daemon.shared.errors import ApplyError

    monkeypatch.setenv("UNIT_S3_KEY", "k")
    dev = world.repo / "environments" / "dev.yaml"
    dev.write_text(dev.read_text() + "storage:\n  root: s3://b/lake\n  storage_options:\n"
                   "    AWS_ENDPOINT_URL: http://127.0.0.1:9\n    AWS_REGION: us-east-1\n"
                   "    AWS_ACCESS_KEY_ID: ${secret:UNIT_S3_KEY}\n    AWS_SECRET_ACCESS_KEY: ${secret:UNIT_S3_KEY}\n")
    world.write("specs/tables/t.yaml", "source: {type: synthetic, rows: 3, columns: [{name: a, kind: sequence}]}\n")
    plan, graph, adapter = world.plan()
    (action,) = plan.changes
    assert action.summary.startswith("built once the object store answers — object store unreachable"), action.summary
    with pytest.raises(ApplyError) as failed:
        adapter.apply(action, graph.by_key()[action.key])
    assert failed.value.transient and failed.value.reason == "StoreUnreachable"


def test_client_options_add_the_environment_ca_for_https_only(tmp_path, monkeypatch):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("UNIT_S3_KEY", "k3y")
    https = {"AWS_ENDPOINT_URL": "https://127.0.0.1:9000", "AWS_SECRET_ACCESS_KEY": "secret:UNIT_S3_KEY"}  # as composed
    options = storage_uri.client_options(https, {"ca": str(ca)})
    assert options == {"AWS_ENDPOINT_URL": "https://127.0.0.1:9000", "AWS_SECRET_ACCESS_KEY": "k3y", "certificate_path": str(ca)}
    assert storage_uri.arrow_s3_kwargs(options)["tls_ca_file_path"] == str(ca)
    assert "certificate_path" not in storage_uri.client_options({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}, {"ca": str(ca)})
    assert storage_uri.client_options(None, {"ca": str(ca)}) is None
    assert storage_uri.arrow_s3_kwargs({"AWS_CA_BUNDLE": "/etc/ca.pem"})["tls_ca_file_path"] == "/etc/ca.pem"
    assert storage_uri.log_options({"storage_options": https, "tls": {"ca": str(ca)}})["certificate_path"] == str(ca)
