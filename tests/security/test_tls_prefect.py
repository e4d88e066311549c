"""The embedded Prefect server over TLS: with `tls.cert`/`tls.key` the daemon's bootstrap starts Prefect's
app under uvicorn with the environment's certificate (daemon/runtime/prefect_tls_server.py). https with
the CA answers, plaintext and a wrong CA are refused, and a flow run made by a separate process (as the
cycle's flow runs and the schedule runner are) reaches it with nothing but the variables the bootstrap set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from daemon.runtime.prefect_bootstrap import bootstrap_prefect
from daemon.schema.environment import EnvironmentSpec
from tests.conftest import free_port

pytestmark = pytest.mark.security

FLOW = """
from prefect import flow

@flow(name="specd-tls-probe")
def probe() -> int:
    return 42

assert probe() == 42
"""


def test_embedded_prefect_server_speaks_https_only(tmp_path, tls_secret, monkeypatch):
    for name in ("PREFECT_API_URL", "PREFECT_API_SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    env = EnvironmentSpec.model_validate({"name": "dev", "prefect": {"port": port}, "tls": tls_secret.section(required=True)})
    server = bootstrap_prefect(tmp_path / "home", env)
    try:
        assert server is not None and server.api_url == f"https://127.0.0.1:{port}/api"
        assert os.environ["PREFECT_API_URL"] == server.api_url
        assert os.environ["PREFECT_API_SSL_CERT_FILE"] == str(tls_secret.ca)
        with urllib.request.urlopen(f"{server.api_url}/health", context=tls_secret.client(), timeout=10) as answer:
            assert answer.status == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plaintext on the TLS port
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=10)
        with pytest.raises(urllib.error.URLError) as wrong:
            urllib.request.urlopen(f"{server.api_url}/health", context=tls_secret.client(ca=tls_secret.wrong_ca), timeout=10)
        assert "CERTIFICATE_VERIFY_FAILED" in str(wrong.value)

        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT")}
        done = subprocess.run([sys.executable, "-c", FLOW], env=child_env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        request = urllib.request.Request(f"{server.api_url}/flow_runs/filter", data=json.dumps({"limit": 10}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, context=tls_secret.client(), timeout=10) as answer:
            runs = json.load(answer)
        assert [run["state_type"] for run in runs] == ["COMPLETED"]
    finally:
        if server is not None:
            server.stop()
