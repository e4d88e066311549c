"""How `env.tls` is threaded to each client and server (the parts a socket test cannot see cheaply):
object-store options, libpq, redis-py and redis-server arguments, BentoML's ssl config, the Prefect
client, PEM text in a secret, and launch fingerprints that do not change for plain-HTTP services."""

from __future__ import annotations

import os
import ssl
import stat

import pytest

from daemon.adapters.services.supervisor import Launch
from daemon.shared import tls


@pytest.fixture
def files(pki):
    return tls.TLSFiles(ca=str(pki.ca), cert=str(pki.cert), key=str(pki.key))


def test_object_store_options_add_the_ca_for_an_https_endpoint(pki):
    section = {"ca": str(pki.ca)}
    options = {"AWS_ENDPOINT_URL": "https://127.0.0.1:9000", "AWS_REGION": "us-east-1"}
    assert tls.object_store_options(options, section)["certificate_path"] == str(pki.ca)
    assert tls.object_store_options({**options, "certificate_path": "/mine.pem"}, section)["certificate_path"] == "/mine.pem"
    assert "certificate_path" not in tls.object_store_options({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}, section)
    assert "certificate_path" not in tls.object_store_options({"AWS_REGION": "eu-west-1"}, section)  # AWS itself: public roots
    assert tls.object_store_options(options, None) == options


@pytest.mark.parametrize("options", [{"aws_endpoint_url": "http://127.0.0.1:9000"}, {"AWS_ALLOW_HTTP": "true"}, {"endpoint": "HTTP://x"}])
def test_required_refuses_plaintext_object_storage(pki, options):
    with pytest.raises(ValueError, match="tls.required refuses"):
        tls.object_store_options(options, {"ca": str(pki.ca), "required": True})


def test_libpq_options_verify_full_against_the_ca(files):
    assert tls.libpq_options(files) == {"sslmode": "verify-full", "sslrootcert": files.ca}
    mtls = tls.TLSFiles(ca=files.ca, cert=files.cert, key=files.key, require_client_cert=True)
    assert tls.libpq_options(mtls)["sslcert"] == files.cert and tls.libpq_options(mtls)["sslkey"] == files.key
    assert tls.libpq_options(None) == {}


def test_redis_server_listens_on_tls_only(files):
    args = tls.redis_server_args(files, 6390)
    assert args[:4] == ["--port", "0", "--tls-port", "6390"]
    assert args[args.index("--tls-auth-clients") + 1] == "no"
    strict = tls.redis_server_args(tls.TLSFiles(ca=files.ca, cert=files.cert, key=files.key, require_client_cert=True,
                                                min_version="TLSv1.3"), 6390)
    assert strict[strict.index("--tls-auth-clients") + 1] == "yes" and strict[strict.index("--tls-protocols") + 1] == "TLSv1.3"


def test_redis_client_options_come_from_env_tls(tls_secret):
    from flows.online.store import client_options, resolved_url

    section = {**tls_secret.section(), "require_client_cert": True}
    embedded = {"url": None, "port": 6390, "tls": section}
    assert resolved_url(embedded) == "rediss://127.0.0.1:6390/0"
    options = client_options(embedded)
    assert options["ssl_ca_certs"] == str(tls_secret.ca) and options["ssl_certfile"] == str(tls_secret.cert)
    assert options["ssl_keyfile"] == str(tls_secret.key) and options["ssl_cert_reqs"] == "required"
    own = client_options({"url": "rediss://cache:6380/0", "ssl_ca_certs": "/own-ca.pem", "tls": section})
    assert own["ssl_ca_certs"] == "/own-ca.pem"  # the section's own field wins
    plain = client_options({"url": "redis://cache:6379/0", "tls": section})
    assert not any(k.startswith("ssl_") for k in plain)  # redis-py's plain connection takes no ssl_* options


def test_bentoml_ssl_config_from_the_supervisor_environment():
    from bentos.bentoml_fixes import ssl_config

    assert ssl_config({}) == {}
    assert ssl_config({"SPECD_TLS_CERTFILE": "/c.pem", "SPECD_TLS_KEYFILE": "/k.pem"}) == {"enabled": True, "certfile": "/c.pem", "keyfile": "/k.pem"}
    mtls = ssl_config({"SPECD_TLS_CERTFILE": "/c.pem", "SPECD_TLS_KEYFILE": "/k.pem", "SPECD_TLS_CA_CERTS": "/ca.pem", "SPECD_TLS_CERT_REQS": "2"})
    assert mtls["ca_certs"] == "/ca.pem" and mtls["cert_reqs"] == ssl.CERT_REQUIRED


def test_plain_launch_fingerprint_is_unchanged_by_the_tls_field():
    plain = Launch("svc", "127.0.0.1", 3100, 1)
    import hashlib
    import json
    from dataclasses import asdict

    before = {k: v for k, v in asdict(plain).items() if k != "tls"}  # a record written before TLS existed
    assert plain.fingerprint() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert Launch("svc", "127.0.0.1", 3100, 1, tls={"cert": "/c.pem", "key": "secret:K"}).fingerprint() != plain.fingerprint()


def test_pem_text_in_a_secret_becomes_a_private_file(pki, tmp_path, monkeypatch):
    monkeypatch.setenv("TLS_KEY_PEM", pki.key.read_text())
    found = tls.resolve({"cert": str(pki.cert), "key": "secret:TLS_KEY_PEM"}, tmp_path)
    assert found is not None and found.key != str(pki.key)
    assert open(found.key).read().strip() == pki.key.read_text().strip()
    assert stat.S_IMODE(os.stat(found.key).st_mode) == 0o600 and stat.S_IMODE(os.stat(os.path.dirname(found.key)).st_mode) == 0o700
    tls.server_context(found)  # loads


def test_missing_tls_file_names_the_secret_not_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TLS_KEY", str(tmp_path / "gone.key"))
    with pytest.raises(FileNotFoundError) as caught:
        tls.resolve({"cert": "/nonexistent.pem", "key": "secret:TLS_KEY"}, tmp_path)
    assert "gone.key" not in str(caught.value)


def test_prefect_client_verifies_an_https_api_with_the_ca(tls_secret, tmp_path, monkeypatch):
    from daemon.runtime.prefect_bootstrap import bootstrap_prefect
    from daemon.runtime.prefect_server import QUIET
    from daemon.schema.environment import EnvironmentSpec

    for key in (*QUIET, "PREFECT_HOME"):  # bootstrap sets these for the process: restored after the test
        monkeypatch.setenv(key, os.environ.get(key, QUIET.get(key, str(tmp_path / "prefect"))))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_API_SSL_CERT_FILE", raising=False)
    env = EnvironmentSpec.model_validate({"name": "dev", "tls": {**tls_secret.section(), "required": True},
                                          "prefect": {"api_url": "https://prefect.internal/api"}})
    assert bootstrap_prefect(tmp_path, env) is None
    assert os.environ["PREFECT_API_URL"] == "https://prefect.internal/api"
    assert os.environ["PREFECT_API_SSL_CERT_FILE"] == str(tls_secret.ca)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    with pytest.raises(RuntimeError, match="tls.required"):
        bootstrap_prefect(tmp_path, env)


def test_uvicorn_contexts_get_the_min_version_floor(pki, monkeypatch):
    import uvicorn.config

    from bentos.bentoml_fixes import enforce_min_tls_version

    monkeypatch.setattr(uvicorn.config, "create_ssl_context", uvicorn.config.create_ssl_context)  # restored after
    plain = uvicorn.config.create_ssl_context(str(pki.cert), str(pki.key), None, ssl.PROTOCOL_TLS_SERVER, ssl.CERT_NONE, None, None)
    assert plain.minimum_version != ssl.TLSVersion.TLSv1_3
    enforce_min_tls_version("TLSv1.3")
    enforce_min_tls_version("TLSv1.3")  # idempotent: wraps the original once
    context = uvicorn.config.create_ssl_context(str(pki.cert), str(pki.key), None, ssl.PROTOCOL_TLS_SERVER, ssl.CERT_NONE, None, None)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert uvicorn.config.create_ssl_context.__wrapped__.__name__ == "create_ssl_context"


def test_a_service_whose_key_cannot_be_read_is_not_started(pki, tmp_path, monkeypatch):
    from daemon.adapters.services.supervisor import Supervisor

    monkeypatch.delenv("TLS_KEY_MISSING", raising=False)
    launch = Launch("svc", "127.0.0.1", 3100, 1, tls={"cert": str(pki.cert), "key": "secret:TLS_KEY_MISSING"})
    supervisor = Supervisor(tmp_path)
    with pytest.raises(RuntimeError, match="service svc: tls: .*secret TLS_KEY_MISSING is not set"):
        supervisor.ensure(launch, wait=False)
    assert supervisor.read_record("svc") is None  # nothing was started
