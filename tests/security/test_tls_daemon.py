"""The daemon's HTTP server (/status, /metrics, /sync) over TLS, configured by a committed `tls:` section:
https with the CA works; plaintext, a wrong CA, a protocol below `min_version` and (mTLS) a client
without a certificate are refused; a key that cannot be read opens no listener at all (fail closed)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request

import pytest

from daemon.runtime.daemon import Daemon

pytestmark = pytest.mark.security


def start_daemon(spec_repo, tmp_path, overlay: str, name: str = "home") -> Daemon:
    spec_repo.write("environments/dev.yaml", (spec_repo.path / "environments" / "dev.yaml").read_text() + overlay)
    spec_repo.commit("tls")
    daemon = Daemon(tmp_path / name, str(spec_repo.path), "main", "dev", metrics_port=0, use_prefect=False)
    env = daemon._bootstrap_environment()
    assert env is not None and env.tls.serving
    daemon._start_metrics(env)
    return daemon


@pytest.fixture
def tls_daemon(spec_repo, tmp_path, tls_secret):
    daemon = start_daemon(spec_repo, tmp_path, tls_secret.yaml())
    try:
        yield daemon
    finally:
        daemon.metrics_server.stop()


@pytest.fixture
def mtls_daemon(spec_repo, tmp_path, tls_secret):
    daemon = start_daemon(spec_repo, tmp_path, tls_secret.yaml(require_client_cert=True, min_version="TLSv1.3"))
    try:
        yield daemon
    finally:
        daemon.metrics_server.stop()


def get(port: int, path: str, context: ssl.SSLContext | None, scheme: str = "https") -> tuple[int, bytes]:
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}{path}", timeout=5, context=context) as response:
        return response.status, response.read()


def test_status_and_metrics_over_https(tls_daemon, pki):
    server = tls_daemon.metrics_server
    assert server.scheme == "https"
    status, body = get(server.port, "/status", pki.client())
    assert status == 200 and "in_sync" in json.loads(body)
    status, body = get(server.port, "/metrics", pki.client())
    assert status == 200 and b"specd_reconcile_runs" in body
    request = urllib.request.Request(f"https://localhost:{server.port}/sync", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=5, context=pki.client()) as response:  # host name checked too
        assert response.status == 202


def test_plaintext_request_is_refused(tls_daemon):
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        get(tls_daemon.metrics_server.port, "/status", None, scheme="http")
    # the server is still up after the refused plaintext connection
    conn = socket.create_connection(("127.0.0.1", tls_daemon.metrics_server.port), timeout=5)
    conn.close()


def test_a_client_with_the_wrong_ca_fails_closed(tls_daemon, pki):
    with pytest.raises(urllib.error.URLError) as caught:
        get(tls_daemon.metrics_server.port, "/status", pki.client(ca=pki.wrong_ca))
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)


def test_mtls_refuses_a_client_without_certificate_and_tls12(mtls_daemon, pki):
    port = mtls_daemon.metrics_server.port
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        get(port, "/status", pki.client())  # no client certificate
    old = pki.client(with_cert=True)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        get(port, "/status", old)  # below min_version
    status, _ = get(port, "/status", pki.client(with_cert=True))
    assert status == 200


def test_unreadable_key_opens_no_listener(spec_repo, tmp_path, pki, monkeypatch):
    monkeypatch.setenv("TLS_KEY", str(tmp_path / "missing.key"))
    spec_repo.write("environments/dev.yaml", (spec_repo.path / "environments" / "dev.yaml").read_text() + pki.yaml())
    spec_repo.commit("tls with a missing key")
    daemon = Daemon(tmp_path / "home", str(spec_repo.path), "main", "dev", metrics_port=0, use_prefect=False)
    daemon._start_metrics(daemon._bootstrap_environment())
    assert daemon.metrics_server is None  # no plaintext fallback


def test_a_merged_tls_section_reopens_the_listener_on_the_same_port(spec_repo, tmp_path, tls_secret):
    daemon = Daemon(tmp_path / "home", str(spec_repo.path), "main", "dev", metrics_port=0, use_prefect=False)
    daemon._start_metrics(daemon._bootstrap_environment())
    try:
        port = daemon.metrics_server.port
        assert get(port, "/healthz", None, scheme="http")[0] == 200
        spec_repo.write("environments/dev.yaml", (spec_repo.path / "environments" / "dev.yaml").read_text() + tls_secret.yaml())
        spec_repo.commit("tls")
        daemon.cycle()
        assert daemon.metrics_server.port == port and daemon.metrics_server.scheme == "https"
        assert get(port, "/status", tls_secret.client())[0] == 200
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            get(port, "/status", None, scheme="http")
    finally:
        if daemon.metrics_server is not None:
            daemon.metrics_server.stop()


class Running:
    """`Daemon.run()` in a thread, as `specd daemon` runs it (no Prefect); stopped and joined on exit."""

    def __init__(self, daemon: Daemon):
        import threading

        self.daemon = daemon
        self.thread = threading.Thread(target=daemon.run, daemon=True)

    def __enter__(self) -> Daemon:
        self.thread.start()
        return self.daemon

    def __exit__(self, *_: object) -> None:
        self.daemon.request_stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


def wait_for(predicate, timeout: float = 60.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_an_invalid_head_with_a_tls_environment_never_opens_plaintext(spec_repo, tmp_path, tls_secret):
    from tests.conftest import free_port

    spec_repo.write("environments/dev.yaml", (spec_repo.path / "environments" / "dev.yaml").read_text() + tls_secret.yaml())
    spec_repo.write("specs/tables/broken.yaml", "source: {type: no_such_source}\n")
    spec_repo.commit("tls, and a spec that does not validate")
    port = free_port()
    with Running(Daemon(tmp_path / "home", str(spec_repo.path), "main", "dev", metrics_port=port, use_prefect=False)) as daemon:
        assert wait_for(lambda: daemon.state.rejected is not None and listening(port))
        assert daemon.metrics_server.scheme == "https"  # the overlay's tls, read without the broken spec
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            get(port, "/status", None, scheme="http")
        status, body = get(port, "/status", tls_secret.client())
        assert status == 200 and json.loads(body)["rejected"]


def test_an_unreadable_environment_opens_no_listener_until_one_is_readable(spec_repo, tmp_path, tls_secret):
    from tests.conftest import free_port

    dev = (spec_repo.path / "environments" / "dev.yaml").read_text() + tls_secret.yaml()
    spec_repo.write("environments/dev.yaml", dev + "  no_such_field: 1\n")  # the tls section itself is invalid
    spec_repo.commit("tls with a typo")
    port = free_port()
    with Running(Daemon(tmp_path / "home", str(spec_repo.path), "main", "dev", metrics_port=port, use_prefect=False)) as daemon:
        assert wait_for(lambda: daemon.state.rejected is not None)
        daemon.wake.set()
        assert not wait_for(lambda: listening(port), timeout=1.5)  # not even briefly in plaintext
        assert daemon.metrics_server is None
        spec_repo.write("environments/dev.yaml", dev)
        spec_repo.commit("tls fixed")
        daemon.wake.set()
        assert wait_for(lambda: listening(port))
        assert daemon.metrics_server.scheme == "https"
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            get(port, "/status", None, scheme="http")
        assert get(port, "/status", tls_secret.client())[0] == 200
