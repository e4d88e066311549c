"""A real `bentoml serve` A/B service over TLS, deployed through the services adapter as the daemon does:
HTTPS only, mTLS (client certificates required) and TLSv1.3 as the floor; the supervisor's readiness
probe speaks HTTPS with specd's certificate; /predict answers over TLS; plaintext, the wrong CA, a client
without a certificate and a TLSv1.2-only client are refused."""

from __future__ import annotations

import ssl

import httpx
import pytest

from daemon.adapters.base import AdapterContext
from daemon.adapters.services.adapter import ServiceAdapter
from daemon.adapters.services.supervisor import Supervisor, service_processes
from daemon.core.plan import Op
from daemon.schema.environment import EnvironmentSpec
from tests.helpers import services as cs

pytestmark = pytest.mark.security


@pytest.fixture(scope="module")
def tls_service(tmp_path_factory, pki):
    mp = pytest.MonkeyPatch()
    mp.setenv("TLS_KEY", str(pki.key))
    home = tmp_path_factory.mktemp("tls-service-home")
    models = cs.make_models(home, ("a", "b"))
    cs.release(home, "m1", models["a"], (models["b"],))
    port = cs.free_port()
    spec = cs.service_spec(port, workers=1)
    env = EnvironmentSpec.model_validate({"name": "test", "tls": pki.section(require_client_cert=True, min_version="TLSv1.3")})
    adapter = ServiceAdapter(AdapterContext(env, home, home, "rev1"))
    resource = cs.resource(spec, "fp1")
    try:
        cs.deploy(adapter, resource, Op.CREATE)
        yield {"port": port, "adapter": adapter, "resource": resource, "home": home}
    finally:
        supervisor = Supervisor(home)
        supervisor.stop_all()
        mp.undo()
        assert service_processes(supervisor.routing_file("penguin_api")) == [], "processes left behind"


def test_predict_over_mtls_and_observed_healthy(tls_service, pki):
    with httpx.Client(verify=pki.client(with_cert=True), timeout=10) as client:
        response = client.post(f"https://127.0.0.1:{tls_service['port']}/predict", json={"features": cs.ROW})
    assert response.status_code == 200 and response.json()["variant"] in {"champion", "challenger"}
    observed = tls_service["adapter"].observe([tls_service["resource"]])["service/penguin_api"]
    assert observed.health == "Healthy", observed  # the supervisor's probe: https, CA-verified, with specd's certificate


def _refused(context: ssl.SSLContext | None, scheme: str, port: int) -> bool:
    try:
        with httpx.Client(verify=context if context is not None else False, timeout=5) as client:
            client.post(f"{scheme}://127.0.0.1:{port}/predict", json={"features": cs.ROW})
    except (httpx.TransportError, ssl.SSLError):
        return True
    return False


def test_plaintext_wrong_ca_no_client_cert_and_tls12_are_refused(tls_service, pki):
    port = tls_service["port"]
    assert _refused(None, "http", port)  # no plaintext listener on the service port
    assert _refused(pki.client(ca=pki.wrong_ca, with_cert=True), "https", port)
    assert _refused(pki.client(), "https", port)  # no client certificate
    old = pki.client(with_cert=True)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _refused(old, "https", port)  # below tls.min_version
