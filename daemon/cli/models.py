"""`specd models [NAME]`: model versions with lineage, metrics and promotion decisions.

Reads only the model store (release files and model.yaml of each stored candidate) — no torch, no
bentoml import — so it answers in milliseconds: which release is current, who is champion and why, which
Delta version and git sha each candidate was trained from, its holdout metrics and, when the spec asks
for k-fold cross-validation, the CV mean ± spread of the promotion metric.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from daemon.shared.paths import bentoml_home, specd_home
from flows.training import registry

# ece_uncalibrated: the ECE of the raw network, beside `ece` of what serves, for a model with `calibration:`
SHOWN_METRICS = ("roc_auc", "accuracy", "f1", "log_loss", "ece", "ece_uncalibrated", "mae", "rmse", "r2")
CURVES = ("roc_curve", "pr_curve", "calibration_curve")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("models", help="list model versions with lineage, metrics and promotion decisions")
    parser.add_argument("name", nargs="?", help="one model (default: all)")
    parser.add_argument("--home", default=None, help="state root (default: $SPECD_HOME or ./.specd)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--report", default=None, metavar="FILE.html",
                        help="write a self-contained HTML report: ROC, precision-recall and calibration curves and ECE per candidate")
    parser.set_defaults(handler=run)


def collect(root: str, name: str | None = None) -> list[dict[str, Any]]:
    from flows.training.artifact import artifact_complete, read_model_info

    models = [name] if name else registry.list_models(root)
    out = []
    for model in models:
        current = registry.current_release(model, root)
        releases = []
        for release in reversed(registry.list_releases(model, root)):
            candidates = {}
            for candidate, info in release.candidates.items():
                tag = info.get("tag")
                stored = bool(tag) and artifact_complete(tag, root)
                labels = read_model_info(tag, root)["labels"] if stored else {}
                candidates[candidate] = {
                    "tag": tag, "status": info.get("status"), "stored": stored,
                    "metrics": {k: v for k, v in (info.get("metrics") or {}).items() if isinstance(v, int | float)},
                    "fairness": (info.get("metrics") or {}).get("fairness", {}),
                    "cv": (info.get("metrics") or {}).get("cv", {}),
                    "curves": {k: v for k, v in (info.get("metrics") or {}).items() if k in CURVES},
                    "lineage": {k.removeprefix("specd."): v for k, v in labels.items()},
                }
            releases.append({**release.to_json(), "current": current is not None and current.fingerprint == release.fingerprint,
                             "promotion_metric": (release.data.get("promotion") or {}).get("metric"), "candidates": candidates})
        out.append({"model": model, "current": current.fingerprint if current else None, "releases": releases})
    return out


def cv_text(cv: dict[str, Any], metric: str | None) -> str:
    """"cv roc_auc 0.9120 ± 0.0150 (5 folds)": mean and spread (std over folds) of the promotion metric."""
    if not cv:
        return ""
    name = metric if metric in cv else next((m for m in SHOWN_METRICS if m in cv), None)
    if name is None or not isinstance(cv[name], dict):
        return ""
    return f"cv {name} {cv[name]['mean']:.4f} ± {cv[name]['std']:.4f} ({cv.get('folds', '?')} folds)"


def _text(models: list[dict[str, Any]]) -> str:
    if not models:
        return "No models in the store."
    lines = []
    for model in models:
        lines.append(f"model {model['model']}")
        for release in model["releases"]:
            marker = "*" if release["current"] else " "
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(release.get("created_at") or 0))
            data = release.get("data") or {}
            lines.append(f" {marker} {release['fingerprint'][:12]}  {when}  git {str(release['git_sha'])[:12]}  "
                         f"table {data.get('table')}@v{data.get('delta_version')}")
            lines.append(f"      champion {release['champion'] or '-'}; challengers {', '.join(release['challengers']) or '-'}")
            lines.append(f"      decision: {release['decision']}")
            for candidate, info in release["candidates"].items():
                shown = ", ".join(f"{k} {info['metrics'][k]:.4f}" for k in SHOWN_METRICS if k in info["metrics"])
                fairness = "; ".join(f"{a}: dpd {v.get('demographic_parity_difference', 0):.3f}" for a, v in info["fairness"].items())
                stored = "" if info["stored"] else " (artifact missing)"
                cv = cv_text(info["cv"], release.get("promotion_metric"))
                lines.append(f"      - {candidate:<10} {info['status']:<9} {info['tag']}{stored}  {shown}"
                             f"{'  ' + cv if cv else ''}{'  ' + fairness if fairness else ''}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    root = str(bentoml_home(specd_home(args.home)))
    if args.name and args.name not in registry.list_models(root):
        print(f"no model {args.name!r} in the store at {root}")
        return 1
    models = collect(root, args.name)
    print(json.dumps(models, indent=2, default=str) if args.json else _text(models))
    if getattr(args, "report", None):
        from pathlib import Path

        from daemon.cli.model_report import write_report

        write_report(models, Path(args.report))
        if not args.json:
            print(f"report written to {args.report}")
    return 0
