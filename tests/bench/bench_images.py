"""Benchmark: what recorded service images add to the `manifests` kind's observe and apply.

A temp repository holds N services on the `kubernetes` target (copies of the example service). Baseline,
measured in the same run: observe + apply of every service's manifests with no image built (the tree's
default references), and a converged observe of them. Then the same with an image recorded for every service version (each observe and
apply reads `<home>/images/<service>.json` and the manifests name the built image), and the cost of
recording N builds. CPU seconds, min/median/max over the repeats, ratios against the baseline; checks
that every Deployment names the recorded image. (Building an image itself takes minutes and is the
opt-in e2e, tests/e2e/test_container_image.py.)

    python tests/bench/bench_images.py [--services 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def cpu(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def observe_apply(adapter, resources) -> int:  # type: ignore[no-untyped-def]
    from daemon.core.plan import Action, Op

    observed = adapter.observe(resources)
    for resource in resources:
        live = observed[resource.key]
        if not live.exists or live.fingerprint != resource.fingerprint or live.drift:
            adapter.apply(Action("manifests", resource.name, Op.UPDATE, "bench", resource.fingerprint), resource)
    return len(observed)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from daemon.adapters.manifests import ManifestsAdapter
    from daemon.runtime.reconcile import context_for, load_desired
    from daemon.shared.images import record_build
    from tests.bench.bench_render import make_repo

    runs: dict[str, list[float]] = {"baseline observe+apply (no image)": [], "observe (converged, no image)": [], "record N builds": [],
                                    "observe+apply (images recorded)": [], "observe (converged, images)": []}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        make_repo(repo, args.services)
        desired = load_desired(repo, "prod", "rev")
        resources = [r for r in desired.graph.resources if r.kind == "manifests"]
        assert len(resources) == args.services
        for i in range(args.repeat):
            home = Path(tmp) / f"home{i}"
            adapter = ManifestsAdapter(context_for(desired, home))
            seconds, _ = cpu(lambda adapter=adapter: observe_apply(adapter, resources))
            runs["baseline observe+apply (no image)"].append(seconds)
            seconds, _ = cpu(lambda adapter=adapter: adapter.observe(resources))
            runs["observe (converged, no image)"].append(seconds)
            built = {r.name: f"localhost/specd/{r.name.replace('_', '-')}:r1-{r.fingerprint[:12]}" for r in resources}
            seconds, _ = cpu(lambda home=home, built=built: [record_build(home, r.name, r.data["image"], {"image": built[r.name]}) for r in resources])
            runs["record N builds"].append(seconds)
            seconds, _ = cpu(lambda adapter=adapter: observe_apply(adapter, resources))
            runs["observe+apply (images recorded)"].append(seconds)
            seconds, observed = cpu(lambda adapter=adapter: adapter.observe(resources))
            runs["observe (converged, images)"].append(seconds)
            assert all(not o.drift for o in observed.values())  # type: ignore[union-attr]
            for r in resources[:5]:
                folder = adapter.root / "ml-prod" / r.name.replace("_", "-")
                images = {yaml.safe_load(p.read_text())["spec"]["template"]["spec"]["containers"][0]["image"] for p in folder.glob("deployment-*.yaml")}
                assert images == {built[r.name]}, images
    print(f"{args.services} services, {args.repeat} runs (CPU seconds)")
    for name, seconds in runs.items():
        print(f"  {name:<36} min/median/max {min(seconds):.3f}/{statistics.median(seconds):.3f}/{max(seconds):.3f} s")
    base = statistics.median(runs["baseline observe+apply (no image)"])
    figures = {name: statistics.median(s) / base for name, s in runs.items()}
    for name in list(runs)[1:]:
        print(f"  ratio {name}/baseline (CPU, median): {figures[name]:.2f}")
    converged = statistics.median(runs["observe (converged, images)"]) / statistics.median(runs["observe (converged, no image)"])
    print(f"  ratio observe converged with/without recorded images (CPU, median): {converged:.2f}")
    figures["converged observe with/without images"] = converged
    figures["services"] = float(args.services)
    return figures


if __name__ == "__main__":
    main()
