"""Benchmark: what TLS adds to `/predict` on loopback — the same A/B service (same models, same spec, one
worker each) deployed twice through the services adapter, once plain HTTP and once with the
environment's `tls:` (trustme certificates), both running at once on 127.0.0.1.

    python tests/bench/bench_tls.py [--size SECONDS] [--rounds N] [--connections-per-round N]

Each round measures, interleaved so that other load on the machine hits both alike:
    keep-alive p50 ms at c1 (wrk, one connection reused: the steady state of any real client)
    new-connection p50 ms (Python client, one TLS handshake per request: the worst case)
and prints min / median / max over the rounds of each, and of the difference https - http:

    TLS added p50 ms keep-alive      (target <= 1 ms)
    TLS added p50 ms new connection  (handshake included; informational)

wrk does not verify certificates; the new-connection client verifies against the CA, like specd does.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

from daemon.adapters.base import AdapterContext  # noqa: E402
from daemon.adapters.services.adapter import ServiceAdapter  # noqa: E402
from daemon.adapters.services.supervisor import Supervisor  # noqa: E402
from daemon.core.plan import Op  # noqa: E402
from daemon.schema.environment import EnvironmentSpec  # noqa: E402
from tests.bench.bench_services import BODY, wrk  # noqa: E402
from tests.helpers import services as cs  # noqa: E402


def spread(values: list[float], digits: int = 3) -> str:
    return f"min {min(values):.{digits}f} median {statistics.median(values):.{digits}f} max {max(values):.{digits}f}"


def make_pki(root: Path) -> tuple[Path, Path, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = root / "ca.pem", root / "server.pem", root / "server.key"
    ca.cert_pem.write_to_path(str(paths[0]))
    cert.cert_chain_pems[0].write_to_path(str(paths[1]))
    cert.private_key_pem.write_to_path(str(paths[2]))
    paths[2].chmod(0o600)
    return paths


def new_connection_p50(port: int, context: ssl.SSLContext | None, requests: int) -> float:
    """p50 ms of POST /predict with a fresh connection (and handshake) per request."""
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        if context is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
        conn.request("POST", "/predict", BODY, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"/predict answered {response.status}")
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (>= 3)")
    parser.add_argument("--connections-per-round", type=int, default=100, help="new-connection requests per server per round")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_tls: wrk not found (Debian package 'wrk')", file=sys.stderr)
        return 2
    rounds = max(3, args.rounds)
    home = Path(tempfile.mkdtemp(prefix="specd-bench-tls-"))
    ca, cert, key = make_pki(home)
    os.environ["SPECD_BENCH_TLS_KEY"] = str(key)
    script = home / "post.lua"
    script.write_text(f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n")
    supervisor = Supervisor(home)
    try:
        models = cs.make_models(home)
        cs.release(home, "bench-m1", models["a"], (models["b"],))
        ports = {"http": cs.free_port(), "https": cs.free_port()}
        envs = {"http": EnvironmentSpec(name="bench"),
                "https": EnvironmentSpec.model_validate({"name": "bench", "tls": {"ca": str(ca), "cert": str(cert),
                                                                                   "key": "secret:SPECD_BENCH_TLS_KEY"}})}
        errors: list[BaseException] = []

        def deploy(kind: str) -> None:
            try:
                adapter = ServiceAdapter(AdapterContext(envs[kind], home, home, "bench"))
                spec = cs.service_spec(ports[kind], workers=1, prediction_log={"enabled": True, "flush_interval_s": 1.0})
                cs.deploy(adapter, cs.resource(spec, "bench-fp", name=f"penguin_{kind}"), Op.CREATE)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=deploy, args=(kind,)) for kind in ports]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        client_tls = ssl.create_default_context(cafile=str(ca))
        contexts = {"http": None, "https": client_tls}
        urls = {kind: f"{kind}://127.0.0.1:{port}/predict" for kind, port in ports.items()}
        same = {new_connection_p50(ports[k], contexts[k], 1) > 0 for k in ports} == {True}
        for url in urls.values():
            wrk(url, 1, 2, script)  # warm up
        keep: dict[str, list[float]] = {k: [] for k in ports}
        fresh: dict[str, list[float]] = {k: [] for k in ports}
        errors_seen = 0.0
        for index in range(rounds):
            order = list(ports) if index % 2 == 0 else list(reversed(ports))
            for kind in order:
                result = wrk(urls[kind], args.size, 1, script)
                keep[kind].append(result["p50_ms"])
                errors_seen += result["errors"]
                fresh[kind].append(new_connection_p50(ports[kind], contexts[kind], args.connections_per_round))
        print(f"rounds: {rounds} size: {args.size:g}s per wrk run, {args.connections_per_round} new connections per server per round")
        print(f"both services answered: {'yes' if same else 'no'}; failed requests: {int(errors_seen)}")
        print(f"http  keep-alive p50 ms at c1: {spread(keep['http'])}")
        print(f"https keep-alive p50 ms at c1: {spread(keep['https'])}")
        print(f"http  new-connection p50 ms: {spread(fresh['http'])}")
        print(f"https new-connection p50 ms: {spread(fresh['https'])}")
        added_keep = [s - p for s, p in zip(keep["https"], keep["http"], strict=True)]
        added_fresh = [s - p for s, p in zip(fresh["https"], fresh["http"], strict=True)]
        print(f"TLS added p50 ms keep-alive (target <= 1 ms): {spread(added_keep)}")
        print(f"TLS added p50 ms new connection (handshake included): {spread(added_fresh)}")
        print(f"ratio keep-alive p50 https/http: {spread([s / p for s, p in zip(keep['https'], keep['http'], strict=True)])}")
        return 0 if errors_seen == 0 else 1
    finally:
        supervisor.stop_all()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
