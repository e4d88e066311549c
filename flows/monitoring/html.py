"""A self-contained HTML drift report (no scripts, no external assets): one row and one bar per feature."""

from __future__ import annotations

import html
import math
from pathlib import Path

from flows.monitoring.check import DriftReport
from flows.monitoring.stats import P_VALUE, ColumnDrift


def render_html(report: DriftReport) -> str:
    def row(c: ColumnDrift) -> str:
        score = 0.0 if math.isnan(c.score) else c.score
        # bar length: how far the score is towards (and past) its threshold
        ratio = (c.threshold / max(score, 1e-12)) if c.method in P_VALUE else score / c.threshold
        width = max(1, min(300, int(150 * min(ratio, 2.0))))
        colour = "#d62728" if c.drifted else "#2ca02c"
        op = "<" if c.method in P_VALUE else ">"
        return (f"<tr><td>{html.escape(c.column)}</td><td>{c.kind}</td><td>{c.method}</td><td>{score:.4g}</td>"
                f"<td>{op} {c.threshold:g}</td><td>{'yes' if c.drifted else 'no'}</td><td>{c.current_rows}</td>"
                f"<td><svg width='300' height='12'><rect width='{width}' height='12' fill='{colour}'/>"
                f"<line x1='150' x2='150' y1='0' y2='12' stroke='#000'/></svg></td></tr>")

    rows = "".join(row(c) for c in report.columns + ([report.prediction] if report.prediction else []))
    ref = report.reference
    verdict = "DRIFT" if report.dataset_drift else ("no drift" if report.enough_rows else "no verdict")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Drift: {html.escape(report.model)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}</style>
</head><body><h1>Drift report: {html.escape(report.model)} — {verdict}</h1>
<p>Reference: table {html.escape(str(ref.get('table')))} at Delta version {html.escape(str(ref.get('delta_version')))}.
Current window: {report.current_rows} logged predictions. Drift share {report.share:.3f} (threshold {report.share_threshold:g}).
{html.escape(report.note)}</p>
<table><tr><th>column</th><th>type</th><th>method</th><th>score</th><th>threshold</th><th>drifted</th><th>rows</th><th>score / threshold (line = threshold)</th></tr>
{rows}</table></body></html>
"""


def write_html(report: DriftReport, path: Path) -> None:
    path.write_text(render_html(report), encoding="utf-8")


def render_text(report: DriftReport) -> str:
    ref = report.reference
    head = (f"model {report.model}: reference {ref.get('table')}@v{ref.get('delta_version')}, "
            f"{report.current_rows} logged predictions in the window")
    if not report.enough_rows:
        return f"{head}\n  no verdict: {report.note}"
    lines = [head, f"  drift share {report.share:.3f} (threshold {report.share_threshold:g}): "
                   f"{'DATASET DRIFT' if report.dataset_drift else 'no dataset drift'}"]
    width = max((len(c.column) for c in report.columns), default=8)
    for c in report.columns + ([report.prediction] if report.prediction else []):
        op = "<" if c.method in P_VALUE else ">"
        mark = "DRIFTED" if c.drifted else "ok"
        lines.append(f"  {c.column:<{width}}  {c.kind:<11}  {c.method:<13}  {c.score:>9.4g}  ({op} {c.threshold:g})  {mark}")
    return "\n".join(lines)
