"""A self-contained HTML report of an A/B analysis: the verdict table and the metric over time per variant.

Self-contained (inline SVG and CSS, no scripts, no external assets) so it can be attached to a pull request,
mailed, or opened on an air-gapped server. The chart shows each variant's cumulative metric at every look
with its 95 % interval as a band, which is what a reader needs to judge whether a lead is stable.
"""

from __future__ import annotations

import html
from pathlib import Path

from bentos.ab_report import ABReport, render

WIDTH, HEIGHT, PAD = 760, 300, 48
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")


def _chart(report: ABReport) -> str:
    points = report.series
    if not points:
        return "<p>No scored predictions with timestamps in the window: nothing to plot yet.</p>"
    stamps = sorted({p["bucket"] for p in points})
    position = {stamp: i for i, stamp in enumerate(stamps)}
    low = min(p["ci_low"] for p in points)
    high = max(p["ci_high"] for p in points)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5

    def x(stamp: str) -> float:
        return PAD + (WIDTH - 2 * PAD) * (position[stamp] / max(1, len(stamps) - 1))

    def y(value: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * ((value - low) / (high - low))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="{html.escape(report.variants[0].metric if report.variants else "metric")} over time">',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>',
             f'<text x="4" y="{PAD}" font-size="11">{high:.3f}</text>',
             f'<text x="4" y="{HEIGHT - PAD}" font-size="11">{low:.3f}</text>',
             f'<text x="{PAD}" y="{HEIGHT - 12}" font-size="11">{html.escape(stamps[0])}</text>',
             f'<text x="{WIDTH - PAD}" y="{HEIGHT - 12}" font-size="11" text-anchor="end">{html.escape(stamps[-1])}</text>']
    variants = sorted({p["variant"] for p in points}, key=lambda v: (v != report.champion, v))
    for index, variant in enumerate(variants):
        colour = COLOURS[index % len(COLOURS)]
        own = [p for p in points if p["variant"] == variant]
        upper = " ".join(f"{x(p['bucket']):.1f},{y(p['ci_high']):.1f}" for p in own)
        lower = " ".join(f"{x(p['bucket']):.1f},{y(p['ci_low']):.1f}" for p in reversed(own))
        line = " ".join(f"{x(p['bucket']):.1f},{y(p['value']):.1f}" for p in own)
        parts.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.15" stroke="none"/>')
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{WIDTH - PAD + 4}" y="{PAD + 14 * index}" font-size="12" fill="{colour}">{html.escape(variant)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(report: ABReport) -> str:
    metric = next((v.metric for v in report.variants if v.metric), "metric")
    rows = []
    for v in report.variants:
        interval = "" if v.value is None else f"{v.value:.4f} [{v.ci_low:.4f}, {v.ci_high:.4f}]"
        lift = "" if v.lift is None or v.lift_ci is None else f"{v.lift:+.4f} [{v.lift_ci[0]:+.4f}, {v.lift_ci[1]:+.4f}]"
        avp = "" if v.always_valid_p is None else f"{v.always_valid_p:.3g}"
        more = "" if v.needs_more is None else str(v.needs_more)
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
            v.variant, v.requests, v.feedback, interval, lift, avp, more)) + "</tr>")
    srm = ""
    if report.srm is not None:
        verdict = "mismatch: do not trust the comparison" if report.srm["mismatch"] else "ok"
        srm = f"<p>Sample ratio of the current routing: chi² = {report.srm['chi2']:.2f}, p = {report.srm['p_value']:.3g} ({html.escape(verdict)}).</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>specd ab {html.escape(report.service)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:900px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f4f4}}pre{{background:#f8f8f8;padding:1em;overflow:auto}}</style>
</head><body>
<h1>A/B report: {html.escape(report.service)}</h1>
<p>Window {html.escape(str(report.window[0] or 'start'))} to {html.escape(str(report.window[1] or 'now'))}; a look every {html.escape(report.bucket)}; significance level {report.alpha}.</p>
<table><tr><th>variant</th><th>requests</th><th>scored</th><th>{html.escape(metric)} [95% CI]</th><th>lift vs {html.escape(report.champion)} [95% CI]</th><th>always-valid p</th><th>needs more</th></tr>
{''.join(rows)}</table>
{srm}
<h2>{html.escape(metric)} over time (cumulative, 95 % interval)</h2>
{_chart(report)}
<h2>Text report</h2>
<pre>{html.escape(render(report))}</pre>
</body></html>
"""


def write_html(report: ABReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_html(report), encoding="utf-8")
