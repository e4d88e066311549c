"""`specd ab SERVICE`: per-variant online metrics of a live A/B service, with uncertainty.

Reads the service's prediction and feedback Delta tables (their URIs come from the live routing file),
joins ground truth to predictions by (request_id, row), and reports per variant: requests, rows,
latency p50/p99, and — where feedback exists — accuracy with a Wilson 95 % interval (classification) or
mean absolute error with a normal interval (regression), plus a two-proportion z-test (or Welch's z) of
each challenger against the champion. Pure statistics below; I/O in `load` and `run`.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def normal_p_value(z: float) -> float:
    """Two-sided p-value of a standard normal statistic."""
    return math.erfc(abs(z) / math.sqrt(2))


def two_proportion_z(successes_a: int, n_a: int, successes_b: int, n_b: int) -> tuple[float, float]:
    """(z, two-sided p) for H0: p_a == p_b, pooled variance."""
    if n_a == 0 or n_b == 0:
        return (0.0, 1.0)
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return (0.0, 1.0)
    z = (successes_b / n_b - successes_a / n_a) / se
    return (z, normal_p_value(z))


def welch_z(values_a: Sequence[float], values_b: Sequence[float]) -> tuple[float, float]:
    """(z, p) for a difference of means, large-sample (Welch) approximation."""
    if len(values_a) < 2 or len(values_b) < 2:
        return (0.0, 1.0)
    mean_a, mean_b = sum(values_a) / len(values_a), sum(values_b) / len(values_b)
    var_a = sum((v - mean_a) ** 2 for v in values_a) / (len(values_a) - 1)
    var_b = sum((v - mean_b) ** 2 for v in values_b) / (len(values_b) - 1)
    se = math.sqrt(var_a / len(values_a) + var_b / len(values_b))
    if se == 0:
        return (0.0, 1.0)
    z = (mean_b - mean_a) / se
    return (z, normal_p_value(z))


def quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class VariantReport:
    variant: str
    model_tags: list[str]
    requests: int
    rows: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    feedback: int
    metric: str  # "accuracy" | "mae" | ""
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    z: float | None = None  # against the champion
    p_value: float | None = None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def analyse(predictions: list[dict[str, Any]], feedback: list[dict[str, Any]], champion: str = "champion") -> list[VariantReport]:
    """Pure: rows of the two tables → one report per variant (champion first)."""
    labels: dict[tuple[str, int], tuple[Any, str]] = {}
    for record in feedback:  # the latest feedback for a row wins
        key = (record["request_id"], int(record.get("row") or 0))
        if key not in labels or str(record.get("ts")) >= labels[key][0]:
            labels[key] = (str(record.get("ts")), str(record["label"]))
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for record in predictions:
        by_variant.setdefault(record["variant"], []).append(record)
    regression = bool(predictions) and all(r.get("probability") is None and _is_number(r["prediction"]) for r in predictions) \
        and all(_is_number(label) for _, label in labels.values())
    reports: dict[str, VariantReport] = {}
    samples: dict[str, list[float]] = {}
    for variant, records in by_variant.items():
        latencies = {}
        for r in records:
            latencies[r["request_id"]] = float(r["latency_ms"])
        scored = [(r, labels[(r["request_id"], int(r["row"]))][1]) for r in records if (r["request_id"], int(r["row"])) in labels]
        report = VariantReport(variant, sorted({r["model_tag"] for r in records}), len(latencies), len(records),
                               quantile(list(latencies.values()), 0.5), quantile(list(latencies.values()), 0.99), len(scored), "")
        if scored and regression:
            errors = [abs(float(r["prediction"]) - float(label)) for r, label in scored]
            mean = sum(errors) / len(errors)
            sd = math.sqrt(sum((e - mean) ** 2 for e in errors) / (len(errors) - 1)) if len(errors) > 1 else 0.0
            half = Z95 * sd / math.sqrt(len(errors))
            report.metric, report.value, report.ci_low, report.ci_high = "mae", mean, max(0.0, mean - half), mean + half
            samples[variant] = errors
        elif scored:
            hits = sum(1 for r, label in scored if r["prediction"] == label)
            report.metric, report.value = "accuracy", hits / len(scored)
            report.ci_low, report.ci_high = wilson_interval(hits, len(scored))
            samples[variant] = [1.0 if r["prediction"] == label else 0.0 for r, label in scored]
        reports[variant] = report
    base = samples.get(champion)
    for variant, report in reports.items():
        if variant == champion or base is None or variant not in samples:
            continue
        if report.metric == "accuracy":
            report.z, report.p_value = two_proportion_z(int(sum(base)), len(base), int(sum(samples[variant])), len(samples[variant]))
        else:
            report.z, report.p_value = welch_z(base, samples[variant])
    return sorted(reports.values(), key=lambda r: (r.variant != champion, r.variant))


def render(service: str, reports: list[VariantReport], alpha: float = 0.05) -> str:
    lines = [f"specd ab {service}", ""]
    header = f"{'variant':<14}{'requests':>9}{'rows':>8}{'p50 ms':>9}{'p99 ms':>9}{'feedback':>10}  {'metric [95% CI]':<32}vs champion"
    lines.append(header)
    for r in reports:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"
        metric = "-" if r.value is None else f"{r.metric} {r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
        versus = "-" if r.p_value is None else f"z={r.z:+.2f} p={r.p_value:.3g} ({'significant' if r.p_value < alpha else 'not significant'} at {alpha})"
        lines.append(f"{r.variant:<14}{r.requests:>9}{r.rows:>8}{ms(r.latency_p50_ms):>9}{ms(r.latency_p99_ms):>9}{r.feedback:>10}  {metric:<32}{versus}")
    if not reports:
        lines.append("  no predictions logged yet")
    return "\n".join(lines)


def load(predictions_uri: str, feedback_uri: str, storage_options: dict[str, str] | None = None) -> tuple[list[dict], list[dict]]:
    from deltalake import DeltaTable

    def rows(uri: str, columns: list[str]) -> list[dict]:
        if not DeltaTable.is_deltatable(uri, storage_options=storage_options or None):
            return []
        return DeltaTable(uri, storage_options=storage_options or None).to_pyarrow_table(columns=columns).to_pylist()

    return (rows(predictions_uri, ["request_id", "row", "variant", "model_tag", "prediction", "probability", "latency_ms"]),
            rows(feedback_uri, ["request_id", "row", "label", "ts"]))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("ab", help="per-variant online metrics of an A/B service, with confidence intervals")
    parser.add_argument("service", help="service name (specs/services/<name>.yaml)")
    parser.add_argument("--champion", default="champion", help="variant the others are compared against")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    if not any(a.dest == "home" for a in parser._actions):
        parser.add_argument("--home", default=None, help="state home (default $SPECD_HOME or ./.specd)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import sys

    from daemon.adapters.services.supervisor import Supervisor
    from daemon.shared.paths import specd_home

    home = specd_home(getattr(args, "home", None))
    routing_file = Supervisor(Path(home)).routing_file(args.service)
    try:
        settings = json.loads(routing_file.read_text(encoding="utf-8"))["settings"]["prediction_log"]
    except (OSError, ValueError, KeyError):
        print(f"specd ab: service {args.service!r} has no live routing under {routing_file.parent} (is it deployed?)", file=sys.stderr)
        return 2
    from daemon.shared.secrets import is_secret_ref, resolve_secret

    options = {k: resolve_secret(v) if is_secret_ref(v) else v for k, v in (settings.get("storage_options") or {}).items()}
    predictions, feedback = load(settings["predictions_uri"], settings["feedback_uri"], options)
    reports = analyse(predictions, feedback, args.champion)
    if args.json:
        print(json.dumps({"service": args.service, "variants": [asdict(r) for r in reports]}, indent=2))
    else:
        print(render(args.service, reports, args.alpha))
    return 0
