"""`tls:` in the environment: schema errors and, with `required: true`, every plaintext endpoint in the
environment and the specs is a `file:line: field:` error from `specd validate` (defaults included)."""

from __future__ import annotations

import pytest

from daemon.core.compose import compose
from daemon.core.tls_guard import plaintext_reason
from daemon.shared.errors import SpecErrors

pytestmark = pytest.mark.security

HTTPS_ENV = """
prometheus:
  url: https://prometheus.internal:9090
prefect:
  api_url: https://prefect.internal/api
"""


def errors(spec_repo, overlay: str) -> list[str]:
    spec_repo.write("environments/dev.yaml", (spec_repo.path / "environments" / "dev.yaml").read_text() + overlay)
    try:
        compose(spec_repo.path, "dev")
    except SpecErrors as exc:
        return [str(issue) for issue in exc.issues]
    return []


def test_plaintext_endpoints_are_errors_naming_file_line_and_field(spec_repo, pki):
    spec_repo.write("specs/tables/api_rows.yaml", "source:\n  type: http\n  url: http://api.internal/rows\n")
    found = errors(spec_repo, pki.yaml(required=True) + "online_store:\n  url: redis://cache.internal:6379/0\n"
                   "grafana:\n  url: http://grafana.internal:3000\n  token: ${secret:GRAFANA_TOKEN}\n")
    text = "\n".join(found)
    assert "specs/tables/api_rows.yaml:3: source.url: http://api.internal: plaintext http:// endpoint" in text
    assert any(e.startswith("environments/dev.yaml:") and ": online_store.url: redis://cache.internal:6379: plaintext redis://" in e for e in found)
    assert any(": grafana.url: http://grafana.internal:3000: plaintext http://" in e for e in found)
    assert any(": prometheus.url: http://127.0.0.1:9090: plaintext http://" in e for e in found)  # the default counts
    assert not any("prefect.api_url" in e for e in found)  # the embedded Prefect server serves HTTPS with tls.cert/key


def test_all_tls_endpoints_validate(spec_repo, pki):
    spec_repo.write("specs/tables/api_rows.yaml", "source:\n  type: http\n  url: https://api.internal/rows\n")
    assert errors(spec_repo, pki.yaml(required=True) + HTTPS_ENV + "online_store:\n  url: rediss://cache.internal:6380/0\n") == []


def test_without_required_plaintext_is_allowed(spec_repo, pki):
    spec_repo.write("specs/tables/api_rows.yaml", "source:\n  type: http\n  url: http://api.internal/rows\n")
    assert errors(spec_repo, pki.yaml()) == []


@pytest.mark.parametrize(("section", "message"), [
    ("tls:\n  cert: /etc/specd/server.pem\n", "tls.cert and tls.key go together"),
    ("tls:\n  cert: /etc/specd/server.pem\n  key: /etc/specd/server.key\n", "tls.key: Value error, must be a secret reference"),
    ("tls:\n  ca: relative/ca.pem\n", "tls.ca: Value error, must be an absolute path"),
    ("tls:\n  min_version: TLSv1.1\n", "tls.min_version"),
    ("tls:\n  cert: /a.pem\n  key: ${secret:K}\n  required: true\n", "tls.required needs tls.ca, tls.cert and tls.key"),
    ("tls:\n  cert: /a.pem\n  key: ${secret:K}\n  require_client_cert: true\n", "tls.require_client_cert needs tls.client_ca"),
    ("tls:\n  ciphers: ALL\n", "tls.ciphers"),
])
def test_schema_errors_name_the_field(spec_repo, section, message):
    found = errors(spec_repo, section)
    assert any(e.startswith("environments/dev.yaml:") and message in e for e in found), found


@pytest.mark.parametrize(("url", "refused"), [
    ("http://x", True), ("HTTP://x", True), ("https://x", False), ("redis://x:1/0", True), ("rediss://x:1/0", False),
    ("postgresql+psycopg://h/db", True), ("postgresql://h/db?sslmode=require", True),
    ("postgresql://h/db?sslmode=verify-full", False), ("postgres://h/db?sslmode=verify-ca", False),
    ("ws://x", True), ("s3://bucket/lake", False), ("sqlite:///data/x.db", False), ("just text", False),
])
def test_plaintext_reason(url, refused):
    assert (plaintext_reason(url) is not None) is refused
