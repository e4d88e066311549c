"""Throwaway PKI for the TLS tests (trustme): a CA, a server certificate for 127.0.0.1/localhost, a client
certificate, and a second, unrelated CA for the "wrong CA fails closed" cases.

The private keys are handed to specd the way a user would: `tls.key` names a secret (`TLS_KEY`) whose
value is the key file's path; `tls_env()` gives the environment variables and the overlay section.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class PKI:
    root: Path
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path

    def section(self, **extra: object) -> dict[str, object]:
        """The environment's `tls:` section as composed (the key a secret reference)."""
        return {"ca": str(self.ca), "cert": str(self.cert), "key": "secret:TLS_KEY", **extra}

    def yaml(self, **extra: object) -> str:
        """The same section as an overlay writes it."""
        section = {**self.section(**extra), "key": "${secret:TLS_KEY}"}
        lines = ["tls:"] + [f"  {k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in section.items()]
        return "\n".join(lines) + "\n"

    def client(self, *, ca: Path | None = None, with_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(ca or self.ca))
        if with_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    import trustme

    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("specd-client@example.test")
    files = PKI(root, root / "ca.pem", root / "server.pem", root / "server.key", root / "client.pem", root / "client.key",
                root / "wrong-ca.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.cert))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert), append=True)
    server.private_key_pem.write_to_path(str(files.key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    trustme.CA().cert_pem.write_to_path(str(files.wrong_ca))
    for path in (files.key, files.client_key):
        path.chmod(0o600)
    return files


@pytest.fixture
def tls_secret(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> Iterator[PKI]:
    """TLS_KEY set in the environment (the key file's path), as `${secret:TLS_KEY}` reads it."""
    monkeypatch.setenv("TLS_KEY", str(pki.key))
    yield pki
