"""`specd models --report FILE.html`: ROC, precision-recall and calibration curves per candidate, with ECE.

One self-contained HTML file (inline SVG, no script, no external asset) so it can be attached to a
review or opened offline. The curves are the ones training stored with each candidate's holdout metrics
(flows/training/metrics.py); nothing is recomputed here, so the report shows exactly what promotion saw.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_SIZE, _PAD = 240, 30
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _polyline(points: Sequence[tuple[float, float]], colour: str) -> str:
    inner = _SIZE - 2 * _PAD
    coords = " ".join(f"{_PAD + x * inner:.1f},{_SIZE - _PAD - y * inner:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>'


def svg_chart(title: str, x_label: str, y_label: str, series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
              diagonal: bool = False) -> str:
    """A unit-square line chart: one polyline per (name, points)."""
    inner = _SIZE - 2 * _PAD
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_SIZE}" height="{_SIZE}" role="img" aria-label="{html.escape(title)}">',
             f'<rect x="{_PAD}" y="{_PAD}" width="{inner}" height="{inner}" fill="none" stroke="#999"/>',
             f'<text x="{_SIZE / 2}" y="16" text-anchor="middle" font-size="12">{html.escape(title)}</text>',
             f'<text x="{_SIZE / 2}" y="{_SIZE - 8}" text-anchor="middle" font-size="10">{html.escape(x_label)}</text>',
             f'<text x="10" y="{_SIZE / 2}" font-size="10" transform="rotate(-90 10 {_SIZE / 2})" text-anchor="middle">{html.escape(y_label)}</text>']
    if diagonal:
        parts.append(_polyline([(0, 0), (1, 1)], "#bbb").replace('stroke-width="2"', 'stroke-width="1" stroke-dasharray="4 3"'))
    for i, (name, points) in enumerate(series):
        if points:
            parts.append(f"<g><title>{html.escape(name)}</title>{_polyline(points, _COLOURS[i % len(_COLOURS)])}</g>")
    parts.append("</svg>")
    return "".join(parts)


def _legend(names: Sequence[str]) -> str:
    return " ".join(f'<span style="color:{_COLOURS[i % len(_COLOURS)]}">&#9632; {html.escape(n)}</span>' for i, n in enumerate(names))


def render_html(models: Sequence[dict[str, Any]]) -> str:
    body = ["<h1>specd model report</h1>"]
    for model in models:
        body.append(f"<h2>model {html.escape(model['model'])}</h2>")
        for release in model["releases"]:
            names, roc, pr, cal = [], [], [], []
            rows = []
            for candidate, info in release["candidates"].items():
                curves = info.get("curves") or {}
                metrics = info.get("metrics") or {}
                names.append(candidate)
                roc.append((candidate, [(p[0], p[1]) for p in curves.get("roc_curve") or []]))
                pr.append((candidate, [(p[0], p[1]) for p in curves.get("pr_curve") or []]))
                cal.append((candidate, [(p[0], p[1]) for p in curves.get("calibration_curve") or []]))
                cells = "".join(f"<td>{metrics[k]:.4f}</td>" if isinstance(metrics.get(k), int | float) else "<td>-</td>"
                                for k in ("roc_auc", "average_precision", "ece", "ece_uncalibrated", "log_loss", "accuracy"))
                rows.append(f"<tr><td>{html.escape(candidate)}</td><td>{html.escape(str(info.get('status')))}</td>{cells}</tr>")
            current = " (current)" if release.get("current") else ""
            body.append(f"<h3>release {html.escape(release['fingerprint'][:12])}{current}</h3>"
                        f"<p>{html.escape(str(release.get('decision') or ''))}</p>")
            body.append("<table><tr><th>candidate</th><th>status</th><th>ROC AUC</th><th>average precision</th>"
                        "<th>ECE</th><th>ECE before calibration</th><th>log loss</th><th>accuracy</th></tr>" + "".join(rows) + "</table>")
            if any(points for _, points in roc + pr + cal):
                body.append(f"<p>{_legend(names)}</p><div>"
                            + svg_chart("ROC", "false positive rate", "true positive rate", roc, diagonal=True)
                            + svg_chart("Precision-recall", "recall", "precision", pr)
                            + svg_chart("Calibration", "mean predicted probability", "observed positive rate", cal, diagonal=True)
                            + "</div>")
            else:
                body.append("<p>No curves stored for these candidates (not a binary classifier, or trained before curves were recorded).</p>")
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}svg{margin-right:12px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>specd model report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def write_report(models: Sequence[dict[str, Any]], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_html(models), encoding="utf-8")
    tmp.replace(path)  # never a half-written report
