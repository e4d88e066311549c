"""Benchmark of the A/B service against a bare Starlette + uvicorn app and a single-model BentoML
service serving the same predictor, BentoML's own ceiling, adaptive batching, and how fast a routing
swap (a rollback) reaches 100 % of traffic.

    python tests/bench/bench_services.py [--size SECONDS] [--rounds N]

The four servers run at once on 127.0.0.1 (one worker process each, same model, same request body);
the fourth, `trivial_bento.py`, is the bare app's endpoint as a BentoML API (same settings and fixes as
specd's services), so trivial/bare is what BentoML's HTTP stack itself leaves reachable.
`wrk` (Debian package) drives them in turn, bounded in time (`--size` seconds per run) and connections.
Each run also reads the CPU time the server's processes used per request (from /proc), a figure that
other load on the machine disturbs much less than requests per second. Each round measures all three at 8 connections and at 1, interleaved, so that noise from other load on
the machine hits them alike; figures are min / median / max over the rounds and compare numbers
measured in this run only, with the 1-minute load average seen during the runs:

    ratio throughput ab/bare at c8     (target >= 0.8)
    ratio throughput trivial-bentoml/bare at c8   (BentoML's ceiling)
    p50 / p99 ms at c1 of A/B, bare, single-model   (A/B p99 target <= 10 ms)
    added p50 ms at c1, A/B - single    (target <= 1 ms)
    ratio batching on/off at concurrency 32
    swap to 100% seconds          (routing file written -> every answer from the new champion)

`--serve-bare PORT TAG STORE` runs the bare app itself (the benchmark starts it that way).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

from daemon.adapters.services.supervisor import Launch, Supervisor, service_processes  # noqa: E402
from daemon.shared.paths import bentoml_home  # noqa: E402
from tests.helpers import services as cs  # noqa: E402

BODY = '{"features": {"bill_length_mm": 39.1, "flipper_length_mm": 181.0, "year": 2008, "island": "v1"}}'
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def serve_bare(port: int, tag: str, store: str) -> None:
    """The plainest HTTP server of the same predictor: Starlette + uvicorn, the model in a thread."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from flows.training.artifact import load_predictor

    predictor = load_predictor(tag, store)

    async def predict(request: Request) -> JSONResponse:
        features = (await request.json())["features"]
        output = await run_in_threadpool(predictor.predict, {name: [value] for name, value in features.items()})
        return JSONResponse({name: values[0] for name, values in output.items()})

    async def livez(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/livez", livez)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_bare(port: int, tag: str, store: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        # a session of its own, like every service the supervisor starts: with the kernel's autogroup
        # scheduling, CPU time is shared between sessions, so all servers must compete alike
        proc = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(port), tag, str(store)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bare app exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise TimeoutError("bare app not ready after 60 s")


def post(url: str) -> dict:
    request = urllib.request.Request(url, data=BODY.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def spread(values: list[float], digits: int = 2) -> str:
    return f"min {min(values):.{digits}f} median {statistics.median(values):.{digits}f} max {max(values):.{digits}f}"


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system, all threads) the processes used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: float, connections: int, script: Path, pids: list[int] | None = None) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency", "-s", str(script), url]
    cpu_before = cpu_seconds(pids or [])
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    cpu = cpu_seconds(pids or []) - cpu_before
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        result[key] = float(value) * UNITS[unit]
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    result["cpu_ms_per_request"] = cpu * 1000.0 / max(1, requests)
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
    parser.add_argument("--size", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of c8 + c1 runs of the three servers (>= 3)")
    parser.add_argument("--serve-bare", nargs=3, metavar=("PORT", "TAG", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), args.serve_bare[1], args.serve_bare[2])
        return 0
    if shutil.which("wrk") is None:
        print("bench_services: wrk not found (Debian package 'wrk')", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="specd-bench-services-"))
    script = home / "post.lua"
    script.write_text(f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n")
    supervisor = Supervisor(home)
    bare: subprocess.Popen | None = None
    try:
        models = cs.make_models(home)
        cs.release(home, "bench-m1", models["a"], (models["b"],))
        ab_port, single_port, bare_port, trivial_port = cs.free_port(), cs.free_port(), cs.free_port(), cs.free_port()
        spec = cs.service_spec(ab_port, workers=1, prediction_log={"enabled": True, "flush_interval_s": 1.0})
        spec_unbatched = cs.service_spec(ab_port, workers=1, prediction_log={"enabled": True, "flush_interval_s": 1.0},
                                         batching={"enabled": False})
        supervisor.ensure(Launch("single", "127.0.0.1", single_port, 1, target="bentos.single_model:SingleModel",
                                 env={"SPECD_MODEL_TAG": models["a"]}), wait=False)
        supervisor.ensure(Launch("trivial", "127.0.0.1", trivial_port, 1, target="tests.bench.trivial_bento:Trivial",
                                 env={"SPECD_MODEL_TAG": models["a"]}), wait=False)
        adapter = cs.adapter(home)
        cs.deploy(adapter, cs.resource(spec_unbatched, "bench-fp0"))
        supervisor.wait_ready("single")
        supervisor.wait_ready("trivial")
        store = bentoml_home(home)
        bare = start_bare(bare_port, models["a"], store, home / "bare.log")
        urls = {name: f"http://127.0.0.1:{port}/predict" for name, port in
                (("ab", ab_port), ("bare", bare_port), ("single", single_port), ("trivial", trivial_port))}
        same = post(urls["bare"]) == post(urls["single"]) == post(urls["trivial"])  # the same predictor behind the baselines
        for url in urls.values():  # warm up
            wrk(url, 1, 4, script)
        processes = {"ab": lambda: service_processes(supervisor.routing_file("penguin_api")),
                     "single": lambda: service_processes(supervisor.routing_file("single")), "bare": lambda: [bare.pid],
                     "trivial": lambda: service_processes(supervisor.routing_file("trivial"))}
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        loads: list[float] = []
        for _ in range(max(3, args.rounds)):
            for connections in (8, 1):
                for name, url in urls.items():
                    runs.setdefault((name, connections), []).append(wrk(url, args.size, connections, script, processes[name]()))
                    loads.append(os.getloadavg()[0])
        unbatched_c32 = wrk(urls["ab"], args.size, 32, script)
        # where the c1 tail comes from: the same runs without the prediction log, then with batching on
        spec_nolog = cs.service_spec(ab_port, workers=1, prediction_log={"enabled": False}, batching={"enabled": False})
        cs.deploy(adapter, cs.resource(spec_nolog, "bench-fp-nolog"))
        nolog_c1 = [wrk(urls["ab"], args.size, 1, script) for _ in range(3)]
        cs.deploy(adapter, cs.resource(spec, "bench-fp1"))  # batching on: a routing change, no restart
        batched_c1 = [wrk(urls["ab"], args.size, 1, script) for _ in range(3)]
        batched_c32 = wrk(urls["ab"], args.size, 32, script)
        swap_s, apply_s = swap_time(urls["ab"], adapter, spec, home, models)
        extra = [unbatched_c32, batched_c32, *nolog_c1, *batched_c1]
        errors = sum(r["errors"] for results in runs.values() for r in results) + sum(r["errors"] for r in extra)

        def column(name: str, connections: int, key: str) -> list[float]:
            return [r[key] for r in runs[(name, connections)]]

        rounds = len(runs[("ab", 8)])
        servers = (("ab", "A/B service "), ("bare", "bare app    "), ("single", "single-model"), ("trivial", "trivial-bento"))
        print(f"rounds: {rounds} (wrk {max(1, round(args.size))} s per run; one worker process per server)")
        print(f"load average (1 min) during the runs: {spread(loads)}  (cores: {os.cpu_count()})")
        print(f"same predictor bare/single: {'yes' if same else 'NO'}")
        with urllib.request.urlopen(f"http://127.0.0.1:{ab_port}/status", timeout=10) as response:
            stack = json.loads(response.read())["server"]
        print(f"server stack of the A/B worker: loop {stack['loop']}, http {stack['http']}  (uvicorn's auto choice, as in the bare app)")
        for name, label in servers:
            print(f"{label} c8 req/s: {spread(column(name, 8, 'rps'), 0)}")
        for name, label in servers:
            print(f"{label} c8 CPU ms per request: {spread(column(name, 8, 'cpu_ms_per_request'), 3)}")
        for name, label in servers:
            print(f"{label} c1 p50 ms: {spread(column(name, 1, 'p50_ms'))}  p99 ms: {spread(column(name, 1, 'p99_ms'))}")
        ab_bare = [a / b for a, b in zip(column("ab", 8, "rps"), column("bare", 8, "rps"), strict=True)]
        ab_single = [a / b for a, b in zip(column("ab", 8, "rps"), column("single", 8, "rps"), strict=True)]
        added = [a - b for a, b in zip(column("ab", 1, "p50_ms"), column("single", 1, "p50_ms"), strict=True)]
        print(f"ratio throughput ab/bare at c8: {spread(ab_bare, 3)}  (target >= 0.8)")
        print(f"ratio throughput ab/single at c8: {spread(ab_single, 3)}")
        ceiling = [a / b for a, b in zip(column("trivial", 8, "rps"), column("bare", 8, "rps"), strict=True)]
        print(f"ratio throughput trivial-bento/bare at c8: {spread(ceiling, 3)}  (BentoML's own ceiling)")
        ab_ceiling = [a / b for a, b in zip(column("ab", 8, "rps"), column("trivial", 8, "rps"), strict=True)]
        print(f"ratio throughput ab/trivial-bento at c8: {spread(ab_ceiling, 3)}")
        cpu_ratio = [b / a for a, b in zip(column("ab", 8, "cpu_ms_per_request"), column("bare", 8, "cpu_ms_per_request"), strict=True)]
        print(f"ratio CPU per request bare/ab at c8: {spread(cpu_ratio, 3)}  (load-independent view of the throughput ratio)")
        cpu_ceiling = [b / t for t, b in zip(column("trivial", 8, "cpu_ms_per_request"), column("bare", 8, "cpu_ms_per_request"), strict=True)]
        print(f"ratio CPU per request bare/trivial-bento at c8: {spread(cpu_ceiling, 3)}")
        bare_p99 = column("bare", 1, "p99_ms")
        print(f"A/B p99 ms at c1: {spread(column('ab', 1, 'p99_ms'))}  (target <= 10; bare app {spread(bare_p99)})")
        print(f"added p50 ms at c1 (ab - single): {spread(added, 3)}  (target <= 1)")
        print(f"A/B p99 ms at c1 without the prediction log: {spread([r['p99_ms'] for r in nolog_c1])}  "
              f"p50 {spread([r['p50_ms'] for r in nolog_c1])}")
        print(f"A/B p99 ms at c1 with batching on (the default): {spread([r['p99_ms'] for r in batched_c1])}  "
              f"p50 {spread([r['p50_ms'] for r in batched_c1])}")
        print(f"A/B c32 batching off: {unbatched_c32['rps']:.0f} req/s  p99 {unbatched_c32['p99_ms']:.2f} ms")
        print(f"A/B c32 batching on:  {batched_c32['rps']:.0f} req/s  p99 {batched_c32['p99_ms']:.2f} ms")
        print(f"ratio batching on/off at c32: {batched_c32['rps'] / unbatched_c32['rps']:.3f}")
        print(f"swap to 100% seconds: {swap_s:.3f}  (adapter apply {apply_s:.3f} s)")
        print(f"failed requests: {errors:.0f}")
        return 0
    finally:
        if bare is not None:
            bare.terminate()
            try:
                bare.wait(10)
            except subprocess.TimeoutExpired:
                bare.kill()
                bare.wait(5)
        supervisor.stop_all()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
