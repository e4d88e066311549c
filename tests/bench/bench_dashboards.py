"""Benchmark: generating, diffing and publishing dashboards for N resources, against plain baselines.

1. Generate + diff: derive the dashboard specs of N services and N tables (PromQL parsed and validated),
   render their Grafana JSON with grafana-foundation-sdk, and diff every spec against a changed revision
   (one weight changed per service) — versus plain `json.dumps` of the same rendered dashboards.
2. Publish: push every dashboard through the adapter (marker, folder, version message, alert-rule files)
   to the fake Grafana, then observe them all — versus raw HTTP POSTs of the same JSON (one persistent
   client), measured in the same run.

    python tests/bench/bench_dashboards.py [--size N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.adapters.base import AdapterContext
from daemon.core.documents import Composed, SpecDoc
from daemon.core.graph import Graph, Resource, fingerprint
from daemon.core.plan import Action, Op, property_diff
from daemon.schema.environment import EnvironmentSpec
from daemon.schema.service import ServiceSpec
from daemon.schema.table import TableSpec

TOKEN = "bench-token"


def _docs(size: int, challenger_weight: int) -> tuple[SpecDoc, ...]:
    docs = []
    for i in range(size):
        service = ServiceSpec.model_validate({"model": "m", "variants": [
            {"name": "champion", "role": "champion", "weight": 100 - challenger_weight},
            {"name": "challenger", "role": "challenger", "weight": challenger_weight}]})
        docs.append(SpecDoc("service", f"svc-{i}", f"specs/services/svc-{i}.yaml", service, service.model_dump(mode="json", by_alias=True)))
        table = TableSpec.model_validate({"source": {"type": "file", "path": f"t{i}.csv", "format": "csv"}, "schedule": "0 * * * *"})
        docs.append(SpecDoc("table", f"tab-{i}", f"specs/tables/tab-{i}.yaml", table, table.model_dump(mode="json", by_alias=True)))
    return tuple(docs)


def _resources(derived: list[SpecDoc]) -> list[Resource]:
    return [Resource(f"dashboard/{d.name}", "dashboard", d.name, d.path, d.spec, d.data, (),
                     fingerprint("dashboard", d.name, d.data, {}, "dashboard/1"), 1) for d in derived]


def bench_generate(size: int) -> dict[str, float]:
    from dashboards.derive import derive_all as derive_dashboards
    from dashboards.render import build_dashboard

    env = EnvironmentSpec(name="bench")
    derive_dashboards(Composed(env, _docs(1, 10)))  # warm imports
    start = time.perf_counter()
    before = derive_dashboards(Composed(env, _docs(size, 10)))
    after = derive_dashboards(Composed(env, _docs(size, 20)))
    rendered = [build_dashboard(d.name, d.spec) for d in after]
    changes = sum(len(property_diff(a.data, b.data)) for a, b in zip(before, after, strict=True))
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    for model in rendered:
        json.dumps(model)
    dumps_s = time.perf_counter() - start
    assert changes >= size, "every service dashboard changed"
    print(f"generate + diff {len(after)} dashboards ({size} services, {size} tables, 1 platform)")
    print(f"  derive x2 + render + diff:  {generate_s * 1000:8.1f} ms   ({changes} property changes)")
    print(f"  baseline json.dumps:        {dumps_s * 1000:8.1f} ms   ratio generate/json.dumps = {generate_s / dumps_s:.1f}x")
    return {"generate_s": generate_s, "dumps_s": dumps_s, "dashboards": len(after), "queries": sum(len(d.spec.all_exprs()) for d in after)}


def bench_publish(size: int) -> dict[str, float]:
    import httpx

    from daemon.adapters.dashboards import DashboardAdapter
    from dashboards.derive import derive_all as derive_dashboards
    from dashboards.render import build_dashboard
    from tests.helpers.fakes.grafana import FakeGrafana

    os.environ["SPECD_BENCH_GRAFANA_TOKEN"] = TOKEN
    with FakeGrafana(token=TOKEN) as fake, tempfile.TemporaryDirectory() as home:
        env = EnvironmentSpec.model_validate({"name": "bench", "grafana": {"url": fake.url, "token": "secret:SPECD_BENCH_GRAFANA_TOKEN", "folder": "bench"}})
        resources = _resources(derive_dashboards(Composed(env, _docs(size, 10))))
        adapter = DashboardAdapter(AdapterContext(env, Path(home), Path(home), "b" * 40))
        start = time.perf_counter()
        for resource in resources:
            adapter.apply(Action("dashboard", resource.name, Op.CREATE, "bench", resource.fingerprint), resource)
        publish_s = time.perf_counter() - start
        start = time.perf_counter()
        observed = adapter.observe(Graph(tuple(resources)).resources)
        observe_s = time.perf_counter() - start
        assert all(o.fingerprint == r.fingerprint for r, o in zip(resources, (observed[r.key] for r in resources), strict=True))
        models = [build_dashboard(r.name, r.spec) for r in resources]
        with httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            start = time.perf_counter()
            for model in models:
                client.post("/api/dashboards/db", json={"dashboard": {**model, "uid": model["uid"] + "-raw", "title": model["title"] + " raw"},
                                                        "folderUid": "bench", "overwrite": True}).raise_for_status()
            raw_s = time.perf_counter() - start
    n = len(resources)
    print(f"publish {n} dashboards to the fake Grafana")
    print(f"  adapter apply (render, marker, rules, push): {publish_s / n * 1000:6.1f} ms/dashboard")
    print(f"  adapter observe (read + versions, all):      {observe_s * 1000:6.1f} ms   ({observe_s / n * 1000:.1f} ms/dashboard)")
    print(f"  baseline raw POST of the same JSON:          {raw_s / n * 1000:6.1f} ms/dashboard   ratio apply/raw = {publish_s / raw_s:.1f}x")
    return {"publish_s": publish_s, "observe_s": observe_s, "raw_s": raw_s}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="number of services (and of tables)")
    args = parser.parse_args(argv)
    figures = bench_generate(args.size)
    figures.update(bench_publish(args.size))
    return figures


if __name__ == "__main__":
    main()
