"""A real, private PostgreSQL cluster for the SQL-source tests (Debian package `postgresql`).

`initdb` + `pg_ctl` in a temp dir, listening on 127.0.0.1 and a free port, password auth over TCP.
PostgreSQL refuses to run as root, so under root the server runs as the `postgres` system user the
Debian package creates. If the cluster cannot start the tests fail (they never skip): the SQL source
must be proven against the real engine. Import explicitly: `from tests.helpers.tables_transforms
import postgres  # noqa: F401`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "pg-test-password-Xy7"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self, database: str | None = None) -> str:
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{database or self.database}"

    def connect(self):
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.database,
            autocommit=True,
        )


def _bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        pytest.fail("PostgreSQL is not installed: apt-get install -y postgresql (initdb not found)")
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with cluster() as server:
        yield server


@contextmanager
def cluster(tls: tuple[Path, Path] | None = None) -> Iterator[Postgres]:
    """A private cluster; with `tls` (certificate, key): `ssl=on` and TCP clients must use TLS
    (pg_hba.conf has only `hostssl` lines, so a plaintext connection is refused)."""
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="specd-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, sockets, log = root / "data", root / "sock", root / "server.log"
    port = _free_port()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)

    run("mkdir", "-p", str(sockets))
    pwfile = root / "pw"
    run("sh", "-c", f"umask 077; printf '%s' '{PASSWORD}' > {pwfile}")
    init = run(
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        "specd",
        "--auth-host=scram-sha-256",
        "--auth-local=trust",
        f"--pwfile={pwfile}",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
    )
    if init.returncode != 0:
        pytest.fail(f"initdb failed: {init.stderr or init.stdout}")
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    if tls is not None:
        files = {"server.crt": Path(tls[0]).read_bytes(), "server.key": Path(tls[1]).read_bytes(),
                 "pg_hba.conf": b"local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n"}
        owner = os.stat(data)
        for name, content in files.items():
            (data / name).write_bytes(content)
            os.chmod(data / name, 0o600)
            os.chown(data / name, owner.st_uid, owner.st_gid)
        options += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
    start = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
    if start.returncode != 0:
        server_log = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {start.stderr or start.stdout}\n{server_log}")
    try:
        server = Postgres("127.0.0.1", port, "specd", PASSWORD, "postgres")
        with server.connect() as connection:
            connection.execute("CREATE DATABASE shop")
        yield Postgres("127.0.0.1", port, "specd", PASSWORD, "shop")
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop")
        shutil.rmtree(root, ignore_errors=True)
