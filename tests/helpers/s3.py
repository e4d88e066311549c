"""An S3 endpoint for the object-storage tests: moto in server mode (`moto_server`) on 127.0.0.1.

moto_server is the only S3-compatible endpoint that installs here and honours the conditional writes
delta-rs commits with (MinIO, SeaweedFS and Garage are not packaged; `rclone serve s3` ignores
conditional writes). It is a test double: production uses a real S3-compatible store.

`s3_server` starts one per session on a free port and stops it by PID; `s3_bucket` gives each test
a fresh bucket. The credentials are secret references (`${secret:S3_TEST_KEY_ID}` ...) whose values
the fixture puts in the environment, as an operator would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

KEY_ID_SECRET = "S3_TEST_KEY_ID"
SECRET_KEY_SECRET = "S3_TEST_SECRET_KEY"
KEY_ID = "specdtestkeyid"
SECRET_KEY = "specd-test-secret-value-7f3a9c"  # must never show up in a plan, log or error


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    pid: int

    def spec_options(self) -> dict[str, str]:
        """storage_options as they go into an environment overlay (credentials as secret references)."""
        plaintext = {"AWS_ALLOW_HTTP": "true"} if self.endpoint.startswith("http://") else {}
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            **plaintext,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": f"${{secret:{KEY_ID_SECRET}}}",
            "AWS_SECRET_ACCESS_KEY": f"${{secret:{SECRET_KEY_SECRET}}}",
        }

    def options(self) -> dict[str, str]:
        """The same options resolved (what deltalake and pyarrow are given)."""
        return {**self.spec_options(), "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    def create_bucket(self, name: str | None = None, ca: Path | None = None) -> str:
        import pyarrow.fs as pafs

        from daemon.shared.storage_uri import arrow_s3_kwargs

        bucket = name or f"specd-{uuid.uuid4().hex[:10]}"
        options = {**self.options(), **({"certificate_path": str(ca)} if ca else {})}
        pafs.S3FileSystem(allow_bucket_creation=True, **arrow_s3_kwargs(options)).create_dir(bucket)
        return bucket


def _moto_server() -> str:
    found = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server is not installed: pip install 'moto[server]' (the test extra)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(log: Path, timeout_s: float = 30.0, *, cert: Path | None = None, key: Path | None = None) -> tuple[subprocess.Popen, S3Server]:
    """moto_server on a free loopback port; over TLS only (`https://`) when given a certificate and key."""
    port = _free_port()
    handle = open(log, "ab")
    tls = ["--ssl-cert", str(cert), "--ssl-key", str(key)] if cert and key else []
    proc = subprocess.Popen([_moto_server(), "-H", "127.0.0.1", "-p", str(port), *tls], stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)
    handle.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, S3Server(f"{'https' if tls else 'http'}://127.0.0.1:{port}", proc.pid)
        except OSError:
            time.sleep(0.1)
    stop_moto(proc)
    raise RuntimeError(f"moto_server did not listen on 127.0.0.1:{port} within {timeout_s} s")


def stop_moto(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One moto_server for the session; its credentials' secret values in the environment."""
    yield from _serve(start_moto(tmp_path_factory.mktemp("moto") / "moto.log"))


@pytest.fixture(scope="session")
def s3_tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Any) -> Iterator[S3Server]:
    """A moto_server speaking https only, with the test PKI's server certificate for 127.0.0.1/localhost."""
    yield from _serve(start_moto(tmp_path_factory.mktemp("moto-tls") / "moto.log", cert=pki.cert, key=pki.key))


def _serve(started: tuple[subprocess.Popen, S3Server]) -> Iterator[S3Server]:
    proc, server = started
    before = {k: os.environ.get(k) for k in (KEY_ID_SECRET, SECRET_KEY_SECRET)}
    os.environ[KEY_ID_SECRET], os.environ[SECRET_KEY_SECRET] = KEY_ID, SECRET_KEY
    try:
        yield server
    finally:
        stop_moto(proc)
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket()
