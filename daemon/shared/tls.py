"""TLS material and `ssl.SSLContext`s from the environment's `tls:` section, in one place.

Why one module: the daemon's HTTP server, the service supervisor's probes, the Redis, PostgreSQL, S3
and Prefect clients and the generated Prometheus config must agree on the same files and the same
minimum version; each of them gets them from here. Secrets stay references until `resolve()`: a
reference's value is a path, or PEM text, which is written once to a 0600 file under the state home
(servers such as `bentoml serve` and `redis-server` only take files). Contexts verify hostnames and
refuse anything below `min_version`; a wrong CA fails closed.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.shared.secrets import is_secret_ref, resolve_secret

VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
FIELDS = ("ca", "cert", "key", "client_ca", "min_version", "require_client_cert", "required")


@dataclass(frozen=True)
class TLSFiles:
    """Resolved paths (never contents) of one environment's TLS material."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None
    min_version: str = "TLSv1.2"
    require_client_cert: bool = False
    required: bool = False

    @property
    def serving(self) -> bool:
        return bool(self.cert and self.key)

    @property
    def verify_clients_with(self) -> str | None:
        return self.client_ca or self.ca


def settings(section: Any) -> dict[str, Any]:
    """The `tls` section as plain data, secret references kept (safe for records and job payloads)."""
    if section is None:
        return {}
    if isinstance(section, Mapping):
        return {k: section.get(k) for k in FIELDS if section.get(k) is not None}
    return {k: getattr(section, k) for k in FIELDS if getattr(section, k, None) is not None}


def _pem_dir(home: Path | None) -> Path:
    base = Path(home) / "run" / "tls" if home else Path(tempfile.gettempdir()) / f"specd-tls-{os.getuid()}"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    return base


def _file(value: str | None, home: Path | None, resolve: Callable[[str], str]) -> str | None:
    if not value:
        return None
    text = resolve(value) if is_secret_ref(value) else value
    if text.lstrip().startswith("-----BEGIN"):  # PEM text in the secret: servers want a file
        digest = hashlib.sha256(text.encode()).hexdigest()[:24]
        path = _pem_dir(home) / f"{digest}.pem"
        if not path.is_file():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pem-")
            with os.fdopen(fd, "w") as handle:
                handle.write(text if text.endswith("\n") else text + "\n")
            os.replace(tmp, path)
        return str(path)
    if not Path(text).is_file():
        where = f"secret {value[7:]}" if is_secret_ref(value) else "tls"
        raise FileNotFoundError(f"TLS file from {where} not found: {'(path hidden)' if is_secret_ref(value) else text}")
    return text


def resolve(section: Any, home: Path | None = None, resolve: Callable[[str], str] = resolve_secret) -> TLSFiles | None:
    """Paths of the section's files (secret references resolved now); None when nothing is configured."""
    data = settings(section)
    if not any(data.get(k) for k in ("ca", "cert", "key", "client_ca")):
        return None
    return TLSFiles(
        ca=_file(data.get("ca"), home, resolve),
        cert=_file(data.get("cert"), home, resolve),
        key=_file(data.get("key"), home, resolve),
        client_ca=_file(data.get("client_ca"), home, resolve),
        min_version=str(data.get("min_version") or "TLSv1.2"),
        require_client_cert=bool(data.get("require_client_cert")),
        required=bool(data.get("required")),
    )


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """For specd's listeners: its certificate, `min_version`, client certificates when mTLS is on."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[files.min_version]
    context.load_cert_chain(files.cert, files.key)
    if files.require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=files.verify_clients_with)
    return context


def client_context(files: TLSFiles | None) -> ssl.SSLContext:
    """For specd's clients: verify the peer against `ca` (system roots when unset), check the host name,
    present specd's certificate when mTLS is on."""
    context = ssl.create_default_context(cafile=files.ca if files else None)
    if files is not None:
        context.minimum_version = VERSIONS[files.min_version]
        if files.require_client_cert and files.cert:
            context.load_cert_chain(files.cert, files.key)
    return context


def scheme(files: TLSFiles | None) -> str:
    return "https" if files is not None and files.serving else "http"


def redis_server_args(files: TLSFiles, port: int) -> list[str]:
    """redis-server listening on TLS only (`--port 0`), client certificates required under mTLS."""
    args = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", files.cert, "--tls-key-file", files.key,
            "--tls-protocols", "TLSv1.3" if files.min_version == "TLSv1.3" else "TLSv1.2 TLSv1.3"]
    ca = files.verify_clients_with
    if ca:
        args += ["--tls-ca-cert-file", ca]
    args += ["--tls-auth-clients", "yes" if files.require_client_cert else "no"]
    return args


def libpq_options(files: TLSFiles | None) -> dict[str, str]:
    """psycopg/libpq connection options: verify the server's certificate and host name against `ca`."""
    if files is None or not files.ca:
        return {}
    options = {"sslmode": "verify-full", "sslrootcert": files.ca}
    if files.require_client_cert and files.cert:
        options.update(sslcert=files.cert, sslkey=files.key)
    return options


_ENDPOINT_KEYS = ("aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint")
_ALLOW_HTTP_KEYS = ("aws_allow_http", "allow_http")


def object_store_options(options: Mapping[str, str], section: Any, home: Path | None = None) -> dict[str, str]:
    """delta-rs/object_store options (resolved) with the environment's CA for an https:// endpoint
    (`certificate_path`, delta-rs ≥ 1.5: added to the trusted roots) unless one is given; `tls.required`
    refuses an http:// endpoint or `allow_http`. Keys are matched case-insensitively, as delta-rs does.
    The section's files are resolved only when an https:// endpoint needs the CA."""
    data = settings(section)
    required = bool(data.get("required"))
    keys = {k.lower(): k for k in options}
    endpoint = next((str(options[keys[k]]) for k in _ENDPOINT_KEYS if k in keys), "")
    if required:
        if endpoint.lower().startswith("http://"):
            raise ValueError("storage.storage_options: tls.required refuses a plaintext http:// object-store endpoint")
        if any(str(options[keys[k]]).strip().lower() in ("1", "true", "yes") for k in _ALLOW_HTTP_KEYS if k in keys):
            raise ValueError("storage.storage_options: tls.required refuses allow_http")
    out = dict(options)
    if data.get("ca") and endpoint.lower().startswith("https://") and "certificate_path" not in keys:
        files = resolve(data, home)
        if files is not None and files.ca:
            out["certificate_path"] = files.ca
    return out
