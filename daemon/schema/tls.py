"""The environment's `tls:` section: one CA, certificate and key for every socket specd opens.

Why one section instead of TLS options per component: the daemon's HTTP server, the services, the
embedded Redis and Prefect, and the generated Prometheus scrape configs all belong to one deployment
and one PKI; specd's clients (Redis, PostgreSQL, S3, Prefect, its own health probes) trust the same CA.
A component's own TLS fields (e.g. `online_store.ssl_ca_certs`) still win where they exist.

Certificates are files. `ca`/`cert`/`client_ca` are absolute paths or secret references whose value is a
path (or PEM text); `key` is always a secret reference. `required: true` makes plaintext a validation
error: no `http://`, `redis://` or `postgresql://` without `sslmode` anywhere in the environment or specs,
and no plaintext listener is opened.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, model_validator

from daemon.schema.base import SecretRef, SpecModel
from daemon.shared.secrets import is_secret_ref


def _file_ref(value: str) -> str:
    if is_secret_ref(value):
        return value
    if not value.startswith("/"):
        raise ValueError("must be an absolute path to a PEM file or ${secret:NAME} (a secret holding the path or the PEM)")
    if any(ord(ch) < 32 for ch in value):
        raise ValueError("path contains control characters")
    return value


FileRef = Annotated[str, AfterValidator(_file_ref)]


class TLSSection(SpecModel):
    """`cert` + `key` set: specd's servers speak TLS only. `ca` set: specd's clients verify against it."""

    ca: FileRef | None = None  # trust anchor of specd's clients (and of Prometheus scraping specd)
    cert: FileRef | None = None  # server certificate (chain) of the daemon, services, embedded Redis
    key: SecretRef | None = None  # its private key: always a secret reference
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    client_ca: FileRef | None = None  # mTLS: CA of accepted client certificates (default: `ca`)
    require_client_cert: bool = False  # mTLS: servers refuse clients without a certificate; clients present `cert`
    required: bool = False  # plaintext endpoints are validation errors; no plaintext port is opened

    @model_validator(mode="after")
    def _consistent(self) -> TLSSection:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key go together (a server certificate needs its key)")
        if self.require_client_cert and self.cert is None:
            raise ValueError("tls.require_client_cert needs tls.cert and tls.key (clients present them too)")
        if self.require_client_cert and self.client_ca is None and self.ca is None:
            raise ValueError("tls.require_client_cert needs tls.client_ca (or tls.ca) to verify client certificates")
        if self.required and (self.cert is None or self.ca is None):
            raise ValueError("tls.required needs tls.ca, tls.cert and tls.key: specd's servers and clients must all speak TLS")
        return self

    @property
    def serving(self) -> bool:
        """specd's own listeners speak TLS (and only TLS)."""
        return self.cert is not None
