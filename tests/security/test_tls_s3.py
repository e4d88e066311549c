"""Object storage over TLS: moto_server serving https only with the test PKI's certificate (127.0.0.1 and
localhost; moto is the only S3 endpoint that installs here — production uses a real S3-compatible store).

The environment's `tls.ca` reaches every S3 client through `storage_uri.client_options`: delta-rs (as
`certificate_path`) when `specd apply` builds a table and `specd erase` deletes from it, pyarrow's
S3FileSystem (as `tls_ca_file_path`: the model store's upload/download, also from its child process), and
the services' prediction/feedback logs (the routing file carries the `tls` references). A wrong CA, or
none, fails closed; `tls.required` refuses a plaintext endpoint before anything connects.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from tests.conftest import ROOT, free_port
from tests.helpers.s3 import SECRET_KEY

pytestmark = [pytest.mark.security, pytest.mark.integration]


def overlay(server, root: str, ca: Path) -> str:
    lines = ["storage:", f"  root: {root}", "  storage_options:"]
    lines += [f"    {k}: {v}" if v.startswith("${") else f"    {k}: \"{v}\"" for k, v in server.spec_options().items()]
    return "\n".join(lines) + f"\ntls:\n  ca: {ca}\n"


def composed(server) -> dict[str, str]:
    """The server's storage_options as compose hands them on (`${secret:NAME}` → `secret:NAME`)."""
    return {k: f"secret:{v[9:-1]}" if v.startswith("${secret:") else v for k, v in server.spec_options().items()}


def specd(*args: str, repo: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPECD_ONLINE_PORT": str(free_port())}
    cmd = [sys.executable, "-m", "daemon.cli", *args, "--repo", str(repo), "--home", str(home), "--env", "dev"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_a_table_built_erased_and_read_on_s3_over_https(spec_repo, home, s3_tls_server, pki):
    from daemon.shared.storage_uri import client_options

    bucket = s3_tls_server.create_bucket(ca=pki.ca)
    root = f"s3://{bucket}/lake"
    spec_repo.write("data/contacts.csv", "contact_id,customer_email\n1,ann@example.com\n2,bob@example.com\n3,ann@example.com\n")
    spec_repo.write("specs/tables/contacts.yaml", "source: {type: file, path: data/contacts.csv, format: csv}\n")
    dev = spec_repo.path / "environments" / "dev.yaml"
    dev.write_text(dev.read_text() + overlay(s3_tls_server, root, pki.ca))
    spec_repo.commit("a table on s3 over https")
    try:
        applied = specd("apply", "--no-prefect", repo=spec_repo.path, home=home)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        options = client_options(composed(s3_tls_server), {"ca": str(pki.ca)})
        assert options["certificate_path"] == str(pki.ca)
        table = DeltaTable(f"{root}/tables/contacts", storage_options=options)
        assert sorted(table.to_pyarrow_table().column("contact_id").to_pylist()) == [1, 2, 3]

        erased = specd("erase", "--subject", "customer_email=ann@example.com", "--vacuum-now", repo=spec_repo.path, home=home)
        assert erased.returncode == 0, erased.stdout + erased.stderr
        table = DeltaTable(f"{root}/tables/contacts", storage_options=options)
        assert table.to_pyarrow_table().column("customer_email").to_pylist() == ["bob@example.com"]
        assert not (home / "lake").exists()  # nothing went to local disk instead
    finally:
        from daemon.adapters.online import embedded

        embedded.stop(home)


def test_a_wrong_ca_or_none_fails_closed(s3_tls_server, pki):
    from daemon.shared import storage_uri

    bucket = s3_tls_server.create_bucket(ca=pki.ca)
    good = storage_uri.client_options(composed(s3_tls_server), {"ca": str(pki.ca)})
    storage_uri.write_bytes(f"s3://{bucket}/probe", b"x", good)
    for section in ({"ca": str(pki.wrong_ca)}, None):
        options = storage_uri.client_options(composed(s3_tls_server), section)
        with pytest.raises(OSError, match="(?i)ssl|certificate"):
            storage_uri.read_bytes(f"s3://{bucket}/probe", options)
        with pytest.raises(OSError):
            DeltaTable(f"s3://{bucket}/nowhere", storage_options={**options, "max_retries": "0"})


def test_tls_required_refuses_a_plaintext_endpoint_for_every_client(pki):
    from daemon.shared.storage_uri import client_options, log_options

    section = {"ca": str(pki.ca), "cert": str(pki.cert), "key": "${secret:TLS_KEY}", "required": True}
    plain = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "us-east-1"}
    with pytest.raises(ValueError, match="tls.required"):
        client_options(plain, section)
    with pytest.raises(ValueError, match="allow_http"):
        client_options({"aws_endpoint_url": "https://127.0.0.1:9", "aws_allow_http": "true"}, section)
    with pytest.raises(ValueError, match="tls.required"):  # a service's logs, `specd ab`, `specd erase`, the ticker
        log_options({"storage_options": plain, "tls": section})
    assert client_options(None, section) is None  # a local lake: nothing to reach


def test_model_store_and_prediction_log_over_https(s3_tls_server, pki, tmp_path):
    from bentos.ab_report import open_logs
    from bentos.prediction_log import PREDICTION_COLUMNS, DeltaLog
    from bentos.worker import storage_options as worker_options
    from daemon.adapters.services.adapter import ServiceAdapter
    from daemon.shared import storage_uri
    from flows.training import shared_store

    bucket = s3_tls_server.create_bucket(ca=pki.ca)
    options = storage_uri.client_options(composed(s3_tls_server), {"ca": str(pki.ca)})
    assert storage_uri.arrow_s3_kwargs(options)["tls_ca_file_path"] == str(pki.ca)
    assert options["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY  # resolved from the secret
    models = f"s3://{bucket}/models"
    (tmp_path / "archive.bentomodel").write_bytes(b"model bytes" * 1000)
    storage_uri.upload(tmp_path / "archive.bentomodel", f"{models}/archive.bentomodel", options)
    storage_uri.download(f"{models}/archive.bentomodel", tmp_path / "back.bentomodel", options)
    assert (tmp_path / "back.bentomodel").read_bytes() == b"model bytes" * 1000
    # the store's child process gets the same options (a release naming no model: fetched, nothing to import)
    release = {"model": "m", "fingerprint": "f" * 16, "champion": None, "challengers": [], "decision": "none passed", "git_sha": "0" * 40}
    storage_uri.write_bytes(shared_store.release_uri(models, "m", "f" * 16), json.dumps(release).encode(), options)
    fetched = shared_store.run("fetch", str(tmp_path / "store"), models, options, model="m", fingerprint="f" * 16)
    assert fetched.get("release", {}).get("model") == "m", fetched

    settings = {"predictions_uri": f"s3://{bucket}/lake/predictions/svc", "feedback_uri": f"s3://{bucket}/lake/feedback/svc",
                "storage_options": composed(s3_tls_server), "tls": {"ca": str(pki.ca)}}  # as the routing file holds them
    ServiceAdapter._ensure_tables(settings, tmp_path)
    log = DeltaLog(settings["predictions_uri"], PREDICTION_COLUMNS, queue_size=10, flush_interval_s=60,
                   storage_options=worker_options(settings))
    try:
        row = {"request_id": "r1", "row": 0, "ts": dt.datetime.now(dt.UTC), "service": "svc", "variant": "a", "model_tag": "m:1",
               "routing_fingerprint": "f", "sticky_key": None, "prediction": "1", "probability": 0.9, "latency_ms": 1.0, "features": "{}"}
        assert log.record(row)
        assert log.flush() == 1
    finally:
        log.close(timeout=5)
    predictions, _ = open_logs(settings["predictions_uri"], settings["feedback_uri"], storage_uri.log_options(settings))
    assert pa.Table.from_batches(predictions.to_batches()).column("request_id").to_pylist() == ["r1"]
