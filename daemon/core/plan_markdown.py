"""`specd plan --format markdown`: the plan as a pull-request comment, like a Terraform plan comment.

Why its own rendering: a reviewer reads the comment top-down and stops early, so the order is what
matters — the summary line, then warnings, then the approvals the change needs, then training and cost
estimates (the adapters' one-liners of models that train), and only then the actions, collapsible per
kind (`<details>`) with their property diffs. It starts with a hidden marker so the CI script updates
its one comment instead of adding a new one per push, and it stays under GitHub's comment size limit.
Pure: renders a `Plan` (and the approvals computed by `daemon.core.owners`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from daemon.core.owners import Approval
from daemon.core.plan import CHANGING, SYMBOLS, Op, Plan

MARKER = "<!-- specd-plan -->"
MAX_CHARS = 60_000  # GitHub refuses comments over 65,536 characters
ESTIMATE_KINDS = ("model",)  # kinds whose summaries carry training time and cost estimates


def _summary_line(plan: Plan) -> str:
    counts = plan.counts()
    parts = [f"{counts[op]} to {op}" for op in CHANGING if counts[op]]
    if counts[Op.ORPHAN]:
        parts.append(f"{counts[Op.ORPHAN]} orphaned (kept)")
    if counts[Op.SUSPENDED]:
        parts.append(f"{counts[Op.SUSPENDED]} suspended")
    parts.append(f"{counts[Op.UNCHANGED]} unchanged")
    return "Plan: " + ", ".join(parts) + "."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(plan: Plan, approvals: Sequence[Approval] = (), *, show_unchanged: bool = False) -> str:
    head = f"### specd plan · env `{plan.env}` · `{plan.revision[:12]}`"
    if plan.base_revision:
        head += f" against `{plan.base_revision[:12]}`"
    lines = [MARKER, head, "", f"**{_summary_line(plan)}**", ""]
    if plan.warnings:
        lines += ["> [!WARNING]"] + [f"> - {_cell(w)}" for w in plan.warnings] + [""]
    if approvals:
        lines += [f"**Approvals needed** (env `{plan.env}` policy): a reviewed merge by", ""]
        for a in approvals:
            who = ", ".join(a.owners) if a.owners else f"nobody declared — add `owners:` to `{a.path}`"
            lines.append(f"- **{a.category}** — {a.what}: {who}")
        lines.append("")
    estimates = [a for a in plan.actions if a.kind in ESTIMATE_KINDS and a.op in CHANGING and a.summary]
    if estimates:
        lines += ["**Training and cost estimates**", ""] + [f"- `{a.kind} {a.name}`: {a.summary}" for a in estimates] + [""]
    shown = [a for a in plan.actions if show_unchanged or a.op != Op.UNCHANGED]
    if not shown:
        lines.append("No changes. The live systems match the specs.")
    kinds = list(dict.fromkeys(a.kind for a in shown))
    for kind in kinds:
        actions = [a for a in shown if a.kind == kind]
        counts = Counter(str(a.op) for a in actions)
        tally = ", ".join(f"{n} {op}" for op, n in sorted(counts.items()))
        lines += ["<details>", f"<summary><b>{kind}</b> ({tally})</summary>", "",
                  "| | resource | op | reason | what happens |", "| --- | --- | --- | --- | --- |"]
        for a in actions:
            lines.append(f"| `{SYMBOLS[a.op]}` | `{a.name}` | {a.op} | {_cell(a.reason)} | {_cell(a.summary)} |")
        diffs = [(a, plan.property_changes.get(a.key, ())) for a in actions]
        diffs = [(a, c) for a, c in diffs if c]
        if diffs:
            lines += ["", "```diff"]
            for a, changes in diffs:
                lines.append(f"@@ {a.kind} {a.name} @@")
                lines += [f"~ {c}" for c in changes[:40]]
                if len(changes) > 40:
                    lines.append(f"# … {len(changes) - 40} more")
            lines.append("```")
        lines += ["", "</details>", ""]
    text = "\n".join(lines).rstrip() + "\n"
    if len(text) > MAX_CHARS:
        cut = text[:MAX_CHARS].rsplit("\n", 1)[0]
        cut += "\n```" if cut.count("```") % 2 else ""
        text = cut + "\n\n_… truncated: the full plan is in the CI job log (`specd plan --format text`)._\n"
        if cut.count("<details>") > cut.count("</details>"):
            text += "</details>\n"
    return text
