"""Benchmark of the A/B service: overhead against a single-model BentoML service, adaptive batching,
and how fast a routing swap (a rollback) reaches 100 % of traffic.

    python tests/bench/bench_services.py [--size SECONDS]

Both services run at once on 127.0.0.1 (1 worker each, same model); `wrk` (Debian package) drives
them in turn, bounded in time (`--size` seconds per run) and connections. Printed ratios compare
numbers measured in this run only:

    ratio throughput ab/single   (target >= 0.9)
    added p50 ms at concurrency 1 (target <= 1 ms)
    ratio batching on/off at concurrency 32
    swap to 100% seconds          (routing file written -> every answer from the new champion)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration")]

from daemon.adapters.services.supervisor import Launch, Supervisor  # noqa: E402
from tests.helpers import services as cs  # noqa: E402

BODY = '{"features": {"bill_length_mm": 39.1, "flipper_length_mm": 181.0, "year": 2008, "island": "v1"}}'
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: float, connections: int, script: Path) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        result[key] = float(value) * UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["errors"] += sum(map(float, socket_errors.groups())) if socket_errors else 0.0
    return result


def swap_time(url: str, adapter, spec, home: Path, models: dict[str, str]) -> tuple[float, float]:
    """Seconds from the start of the rollback to the first answer after which the champion is always
    the restored model, and the adapter's apply time (routing written + every worker acknowledged)."""
    import httpx

    cs.release(home, "bench-m2", models["b"], (models["a"],))
    cs.deploy(adapter, cs.resource(spec, "bench-fp2"))  # the "bad" version is live
    answers: list[tuple[float, str]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                body = http.post(url, content=BODY, headers={"Content-Type": "application/json"}).json()
                if body["variant"] == "champion":
                    answers.append((time.monotonic(), body["model_version"]))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    cs.release(home, "bench-m1", models["a"], (models["b"],))  # the model's revert: m1 is current again
    cs.deploy(adapter, cs.resource(spec, "bench-fp1"))
    applied = time.monotonic() - started
    time.sleep(1.0)
    stop.set()
    thread.join(10)
    last_old = max((t for t, tag in answers if tag != models["a"] and t >= started), default=started)
    return last_old - started, applied


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=10.0, help="seconds per wrk run")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_services: wrk not found (Debian package 'wrk')", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="specd-bench-services-"))
    script = home / "post.lua"
    script.write_text(f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n")
    supervisor = Supervisor(home)
    try:
        models = cs.make_models(home)
        cs.release(home, "bench-m1", models["a"], (models["b"],))
        ab_port, single_port = cs.free_port(), cs.free_port()
        spec = cs.service_spec(ab_port, workers=1, prediction_log={"enabled": True, "flush_interval_s": 1.0})
        spec_unbatched = cs.service_spec(ab_port, workers=1, prediction_log={"enabled": True, "flush_interval_s": 1.0},
                                         batching={"enabled": False})
        supervisor.ensure(Launch("single", "127.0.0.1", single_port, 1, target="bentos.single_model:SingleModel",
                                 env={"SPECD_MODEL_TAG": models["a"]}), wait=False)
        adapter = cs.adapter(home)
        cs.deploy(adapter, cs.resource(spec_unbatched, "bench-fp0"))
        supervisor.wait_ready("single")
        ab_url, single_url = f"http://127.0.0.1:{ab_port}/predict", f"http://127.0.0.1:{single_port}/predict"
        for url in (ab_url, single_url):  # warm up
            wrk(url, 1, 4, script)
        single = wrk(single_url, args.size, 8, script)
        ab = wrk(ab_url, args.size, 8, script)
        single_c1 = wrk(single_url, args.size, 1, script)
        ab_c1 = wrk(ab_url, args.size, 1, script)
        unbatched_c32 = wrk(ab_url, args.size, 32, script)
        cs.deploy(adapter, cs.resource(spec, "bench-fp1"))  # batching on: a routing change, no restart
        batched_c32 = wrk(ab_url, args.size, 32, script)
        swap_s, apply_s = swap_time(ab_url, adapter, spec, home, models)
        errors = sum(r["errors"] for r in (single, ab, single_c1, ab_c1, unbatched_c32, batched_c32))
        print(f"single-model  c8: {single['rps']:.0f} req/s  p50 {single['p50_ms']:.2f} ms  p99 {single['p99_ms']:.2f} ms")
        print(f"A/B service   c8: {ab['rps']:.0f} req/s  p50 {ab['p50_ms']:.2f} ms  p99 {ab['p99_ms']:.2f} ms")
        print(f"single-model  c1: p50 {single_c1['p50_ms']:.2f} ms  p99 {single_c1['p99_ms']:.2f} ms")
        print(f"A/B service   c1: p50 {ab_c1['p50_ms']:.2f} ms  p99 {ab_c1['p99_ms']:.2f} ms")
        print(f"A/B c32 batching off: {unbatched_c32['rps']:.0f} req/s  p99 {unbatched_c32['p99_ms']:.2f} ms")
        print(f"A/B c32 batching on:  {batched_c32['rps']:.0f} req/s  p99 {batched_c32['p99_ms']:.2f} ms")
        print(f"ratio throughput ab/single: {ab['rps'] / single['rps']:.3f}  (target >= 0.9)")
        print(f"added p50 ms at c1: {ab_c1['p50_ms'] - single_c1['p50_ms']:.3f}  (target <= 1)")
        print(f"ratio batching on/off at c32: {batched_c32['rps'] / unbatched_c32['rps']:.3f}")
        print(f"swap to 100% seconds: {swap_s:.3f}  (adapter apply {apply_s:.3f} s)")
        print(f"failed requests: {errors:.0f}")
        return 0
    finally:
        supervisor.stop_all()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
