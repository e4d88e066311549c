"""Benchmark: what the Kubernetes deploy target adds to `specd validate` / `specd plan`.

A temp repository holds the example tables and model plus N services (copies of the example service).
Baseline: composing the repository with every service on the local target (what validate and plan do
anyway). Measured in the same run, CPU seconds: composing with `deploy.target: kubernetes` (the derive
hook), rendering every service's manifests, and validating them offline for two Kubernetes versions
(kubernetes-validate strict + the HTTPRoute model), and the adapter's check cold and warm (a daemon
cycle or warm plan with no service changed: validation results are memoised by the resource's data). Prints min/median/max over the repeats and the
ratios against the baseline, and checks that every rendered manifest is valid and deterministic.

    python tests/bench/bench_render.py [--services 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def make_repo(path: Path, services: int) -> None:
    shutil.copytree(ROOT / "environments", path / "environments")
    shutil.copytree(ROOT / "specs", path / "specs")
    source = (path / "specs/services/penguin_api.yaml").read_text()
    for i in range(services):
        text = source.replace("features_from:\n  table: gold_penguin_features\n  key: penguin_id\n", "")
        (path / f"specs/services/svc_{i:04d}.yaml").write_text(text + f"port: {4000 + i}\n")
    (path / "specs/services/penguin_api.yaml").unlink()


def cpu(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from daemon.adapters.base import AdapterContext
    from daemon.adapters.k8s_schemas import validate_files
    from daemon.adapters.manifests import _CHECKED, ManifestsAdapter
    from daemon.core.manifests import render, render_files
    from daemon.runtime.reconcile import load_desired

    runs: dict[str, list[float]] = {"baseline compose (local)": [], "compose (kubernetes)": [], "render": [], "validate x2 versions": [],
                                    "check cold (adapter)": [], "check warm (unchanged)": []}
    objects_total = 0
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        make_repo(repo, args.services)
        load_desired(repo, "dev", "warmup")  # imports, first compose
        for _ in range(args.repeat):
            seconds, _ = cpu(lambda: load_desired(repo, "dev", "rev"))
            runs["baseline compose (local)"].append(seconds)
            seconds, desired = cpu(lambda: load_desired(repo, "dev", "rev", ["env.deploy.target=kubernetes"]))
            runs["compose (kubernetes)"].append(seconds)
            resources = [r for r in desired.graph.resources if r.kind == "manifests"]
            assert len(resources) == args.services
            seconds, rendered = cpu(lambda resources=resources: [render(r.data, r.fingerprint, "rev") for r in resources])
            runs["render"].append(seconds)
            seconds, problems = cpu(lambda rendered=rendered: [p for objects in rendered for p in validate_files(objects, ["1.29", "1.31"])])
            runs["validate x2 versions"].append(seconds)
            assert problems == [], problems[:3]
            adapter = ManifestsAdapter(AdapterContext(desired.composed.env, Path(tmp) / "home", repo, "rev"))
            _CHECKED.clear()
            seconds, issues = cpu(lambda adapter=adapter, desired=desired: adapter.check(desired.graph.resources, desired.graph))
            runs["check cold (adapter)"].append(seconds)
            assert issues == []
            seconds, issues = cpu(lambda adapter=adapter, desired=desired: adapter.check(desired.graph.resources, desired.graph))
            runs["check warm (unchanged)"].append(seconds)
            objects_total = sum(len(objects) for objects in rendered)
            assert [render_files(r.data, r.fingerprint, "rev") for r in resources[:3]] == [render_files(r.data, r.fingerprint, "rev") for r in resources[:3]]
    print(f"{args.services} services, {objects_total} manifests, {args.repeat} runs (CPU seconds)")
    for name, seconds in runs.items():
        print(f"  {name:<26} min/median/max {min(seconds):.3f}/{statistics.median(seconds):.3f}/{max(seconds):.3f} s")
    base = statistics.median(runs["baseline compose (local)"])
    figures = {name: statistics.median(s) / base for name, s in runs.items()}
    for name in ("compose (kubernetes)", "render", "validate x2 versions", "check cold (adapter)", "check warm (unchanged)"):
        print(f"  ratio {name}/baseline (CPU, median): {figures[name]:.2f}")
    per = 1000 * statistics.median(runs["validate x2 versions"]) / max(objects_total, 1)
    print(f"  validation: {per:.2f} ms CPU per manifest for two versions")
    figures["objects"] = float(objects_total)
    return figures


if __name__ == "__main__":
    main()
