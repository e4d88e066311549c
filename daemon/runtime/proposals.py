"""Online A/B verdicts become Git commits: specd never flips traffic behind Git's back.

When a service's `promotion.online` rule is met (enough scored feedback per variant, an always-valid
mSPRT p-value from bentos/ab_report.py under the significance level, no sample-ratio mismatch, the
latency and error-rate guardrails held), `propose` edits the service spec so the winner takes the champion's traffic
(winner weight += champion weight, champion weight → 0; a ruamel.yaml round trip that keeps comments and
layout), re-validates the whole tree, and commits it with the evidence in the message:

- by default to a proposal branch `specd/proposals/<service>-<hash>` for review (pushed for a remote
  repository), where <hash> digests the service, the spec file before and after: the same change from the
  same spec is never proposed twice, and a reverted proposal is not proposed again (its branch is kept);
- with `auto_promote: true` in the environment, straight onto the watched branch (compare-and-swap on a
  local repository, a fast-forward push for a remote one). A local checkout of the watched branch is
  fast-forwarded with it; one with uncommitted changes is left alone and gets a proposal branch instead.

The commit is built in a temporary `git worktree` of the repository's git directory (the daemon's mirror
for a remote), so neither the daemon's checkouts nor the user's working tree are touched; the daemon then
applies it like any other commit, and `git revert` undoes it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bentos.ab_report import ABReport, VariantReport, build_report, query
from daemon.schema.service import ServiceSpec
from daemon.schema.service_promotion import OnlinePromotionSpec

log = logging.getLogger("specd.proposals")

PROPOSAL_PREFIX = "specd/proposals/"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class ProposalError(Exception):
    """A proposal could not be written (git failed, or the edited spec does not validate)."""


# ------------------------------------------------------------------------------------------------ verdict
@dataclass
class Verdict:
    service: str
    winner: str | None
    champion: str
    reasons: list[str] = field(default_factory=list)  # why there is no verdict (or the winner's summary)


def window_since(rule: OnlinePromotionSpec, now: datetime) -> str:
    amount, unit = int(rule.window[:-1]), rule.window[-1]
    return (now - timedelta(**{_UNITS[unit]: amount})).isoformat()


def decide(report: ABReport, rule: OnlinePromotionSpec, latency_limit_ms: float, error_limit: float | None = None) -> Verdict:
    """Pure: the report and the rule → a winner, or the reasons there is none."""
    verdict = Verdict(report.service, None, rule.champion)
    by_name = {v.variant: v for v in report.variants}
    base = by_name.get(rule.champion)
    if base is None or base.feedback == 0:
        verdict.reasons.append(f"champion {rule.champion!r} has no scored feedback in the window")
        return verdict
    if base.metric != rule.metric:
        verdict.reasons.append(f"the logs give {base.metric or 'no metric'}, the rule asks for {rule.metric}")
        return verdict
    if report.srm is not None and report.srm["mismatch"]:
        verdict.reasons.append(f"sample ratio mismatch (chi2={report.srm['chi2']:.2f}, p={report.srm['p_value']:.3g}): "
                               "the split does not follow the weights, no verdict until it does")
        return verdict
    challengers = [v for v in report.variants if v.variant != rule.champion]
    if not challengers:
        verdict.reasons.append("no challenger logged in the window")
        return verdict
    alpha = rule.alpha / len(challengers)  # Bonferroni: several challengers, one family-wise error rate
    winners: list[VariantReport] = []
    for v in challengers:
        if min(base.feedback, v.feedback) < rule.min_samples:
            verdict.reasons.append(f"{v.variant}: {min(base.feedback, v.feedback)} scored rows, needs {rule.min_samples} per variant")
        elif v.always_valid_p is None or v.always_valid_p >= alpha:
            verdict.reasons.append(f"{v.variant}: always-valid p={v.always_valid_p if v.always_valid_p is not None else 1:.3g} "
                                   f"not under {alpha:.3g}")
        elif not v.better:
            verdict.reasons.append(f"{v.variant}: significantly worse than {rule.champion} (lift {v.lift:+.4f})")
        elif v.latency_p99_ms is not None and v.latency_p99_ms > latency_limit_ms:
            verdict.reasons.append(f"{v.variant}: guardrail: latency p99 {v.latency_p99_ms:.1f} ms over {latency_limit_ms:g} ms")
        elif error_limit is not None and v.error_rate is not None and v.error_rate > error_limit:
            verdict.reasons.append(f"{v.variant}: guardrail: error rate {v.error_rate:.2%} ({v.errors} of {v.requests} requests "
                                   f"failed) over {error_limit:.2%}")
        else:
            winners.append(v)
    if winners:
        best = max(winners, key=lambda v: v.lift if rule.metric == "accuracy" else -(v.lift or 0))
        verdict.winner = best.variant
    return verdict


def evaluate(predictions: Any, feedback: Any, name: str, spec: ServiceSpec, *, now: datetime | None = None,
             routing_fingerprint: str | None = None, weights: Mapping[str, float] | None = None) -> tuple[ABReport, Verdict]:
    """One ab_report query over the logs in the rule's window → (report, verdict). SRM against `weights`
    (default: the spec's) counted over the current routing's requests (all requests when no fingerprint)."""
    rule = spec.promotion.online
    if rule is None:
        raise ValueError(f"service {name} has no promotion.online rule")
    now = now or datetime.now(UTC)
    since = window_since(rule, now)
    totals, buckets = query(predictions, feedback, since=since, until=now.isoformat(), bucket=rule.bucket,
                            routing_fingerprint=routing_fingerprint)
    key = "current_requests" if routing_fingerprint else "requests"
    counts = {r["variant"]: int(r[key] or 0) for r in totals}
    report = build_report(name, totals, buckets, champion=rule.champion, alpha=rule.alpha,
                          weights=weights or spec.normalised_weights(), current_counts=counts,
                          window=(since, now.isoformat()), bucket=rule.bucket, tau=rule.tau)
    limit = rule.max_latency_p99_ms or spec.slo.latency_p99_ms
    errors = rule.max_error_rate if rule.max_error_rate is not None else spec.slo.error_rate
    return report, decide(report, rule, limit, errors)


# ------------------------------------------------------------------------------------------------ the edit
def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: comments, key order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def edit_weights(text: str, champion: str, winner: str) -> tuple[str, dict[str, tuple[float, float]]] | None:
    """The service file with the winner taking the champion's weight; None when that is already so.
    Returns (new text, {variant: (old weight, new weight)})."""
    yaml = _yaml()
    data = yaml.load(text)
    variants = data.get("variants") if isinstance(data, Mapping) else None
    if not isinstance(variants, list):
        raise ProposalError("the service file does not list its variants literally (a preset or overlay sets them)")
    entries = {str(v.get("name")): v for v in variants if isinstance(v, Mapping)}
    if champion not in entries or winner not in entries:
        raise ProposalError(f"variants {champion!r} and {winner!r} must both be listed in the service file")
    old_c, old_w = entries[champion]["weight"], entries[winner]["weight"]
    if not old_c:
        return None
    new_w = old_w + old_c
    entries[winner]["weight"] = int(new_w) if isinstance(old_w, int) and isinstance(old_c, int) else float(new_w)
    entries[champion]["weight"] = 0
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue(), {champion: (old_c, 0), winner: (old_w, entries[winner]["weight"])}


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def commit_message(report: ABReport, verdict: Verdict, changes: Mapping[str, tuple[float, float]], path: str) -> str:
    by_name = {v.variant: v for v in report.variants}
    w, c = by_name[verdict.winner], by_name[verdict.champion]
    lines = [f"specd: promote {verdict.winner} over {verdict.champion} in service {report.service} (online A/B verdict)", "",
             f"{w.variant} beats {c.variant} on {w.metric}: {_fmt(w.value)} vs {_fmt(c.value)}, "
             f"lift {_fmt(w.lift, '+.4f')} [95% CI {_fmt(w.lift_ci[0], '+.4f')}, {_fmt(w.lift_ci[1], '+.4f')}], "
             f"always-valid p={w.always_valid_p:.3g} (mSPRT, alpha {report.alpha}), fixed-horizon p={w.p_value:.3g}.",
             "Weights in " + path + ": " + ", ".join(f"{n} {a:g} -> {b:g}" for n, (a, b) in changes.items()) + ".", "",
             f"Window {report.window[0]} .. {report.window[1]}, looks per {report.bucket}:"]
    for v in report.variants:
        lines.append(f"  {v.variant}: n={v.feedback} scored, {v.requests} requests, {v.metric} {_fmt(v.value)} "
                     f"[{_fmt(v.ci_low)}, {_fmt(v.ci_high)}], latency p99 {_fmt(v.latency_p99_ms, '.1f')} ms")
    if report.srm is not None:
        lines.append(f"  sample ratio: chi2={report.srm['chi2']:.3f} p={report.srm['p_value']:.3g} (no mismatch)")
    lines += ["", "Generated by specd from the service's prediction and feedback logs; `git revert` undoes it.", "",
              "Specd-Evidence: " + json.dumps({
                  "service": report.service, "winner": w.variant, "champion": c.variant, "metric": w.metric,
                  "lift": w.lift, "lift_ci": list(w.lift_ci or ()), "always_valid_p": w.always_valid_p,
                  "n": {v.variant: v.feedback for v in report.variants},
                  "srm_p": None if report.srm is None else report.srm["p_value"], "window": list(report.window)},
                  sort_keys=True, default=str)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------- git
def _git(args: list[str], *, cwd: Path | None = None, git_dir: Path | None = None, check: bool = True, strip: bool = True) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    for key, value in (("GIT_AUTHOR_NAME", "specd"), ("GIT_AUTHOR_EMAIL", "specd@localhost.invalid"),
                       ("GIT_COMMITTER_NAME", "specd"), ("GIT_COMMITTER_EMAIL", "specd@localhost.invalid")):
        env.setdefault(key, value)
    prefix = ["git", "-c", "commit.gpgsign=false"] + ([f"--git-dir={git_dir}"] if git_dir else [])
    result = subprocess.run(prefix + args, cwd=cwd, capture_output=True, text=True, env=env, timeout=120, check=False)
    if check and result.returncode != 0:
        raise ProposalError(f"git {' '.join(args[:2])}: {result.stderr.strip()[:500]}")
    if result.returncode != 0:
        return ""
    return result.stdout.strip() if strip else result.stdout


@dataclass(frozen=True)
class Proposal:
    branch: str
    commit: str
    subject: str
    date: str = ""


def open_proposals(git_dir: Path, branch: str, service: str | None = None) -> list[Proposal]:
    """`specd/proposals/*` branches not merged into the watched branch (newest first)."""
    out = _git(["for-each-ref", "--sort=-committerdate", "--no-merged", f"refs/heads/{branch}",
                "--format=%(refname:short)%09%(objectname)%09%(committerdate:iso-strict)%09%(subject)",
                f"refs/heads/{PROPOSAL_PREFIX}"], git_dir=git_dir, check=False)
    proposals = []
    for line in out.splitlines():
        name, sha, date, subject = (line.split("\t", 3) + ["", "", ""])[:4]
        if service is None or name.startswith(f"{PROPOSAL_PREFIX}{service}-"):
            proposals.append(Proposal(name, sha, subject, date))
    return proposals


@dataclass
class ProposeResult:
    service: str
    action: str  # "proposed" | "promoted" | "exists" | "no-verdict" | "unchanged"
    branch: str | None = None
    commit: str | None = None
    reasons: list[str] = field(default_factory=list)


def _validate(tree: Path, env_name: str, overrides: tuple[str, ...], home: Path, service: str,
              expected: Mapping[str, float]) -> None:
    from daemon.runtime.reconcile import check, context_for, load_desired
    from daemon.runtime.reconcile import make_adapters as adapters
    from daemon.shared.errors import SpecErrors

    try:
        desired = load_desired(tree, env_name, "proposal", overrides)
        check(adapters(context_for(desired, home)), desired.graph)
    except SpecErrors as exc:
        raise ProposalError("the edited spec does not validate: " + "; ".join(str(i) for i in exc.issues)) from exc
    doc = desired.composed.by_key().get(f"service/{service}")
    composed = {v.name: v.weight for v in doc.spec.variants} if doc else {}
    if any(composed.get(name) != weight for name, weight in expected.items()):
        raise ProposalError(f"an overlay or override sets the weights of service {service}: the edit would not take effect")


def propose(*, repo: str, branch: str, env_name: str, home: Path, service: str, spec_path: str, spec: ServiceSpec,
            predictions: Any, feedback: Any, overrides: tuple[str, ...] = (), auto_promote: bool = False,
            now: datetime | None = None, routing_fingerprint: str | None = None,
            weights: Mapping[str, float] | None = None) -> ProposeResult:
    """Evaluate the rule once; on a verdict, commit the promotion (proposal branch or watched branch)."""
    from daemon.runtime.source import GitSource

    report, verdict = evaluate(predictions, feedback, service, spec, now=now, routing_fingerprint=routing_fingerprint,
                               weights=weights)
    if verdict.winner is None:
        return ProposeResult(service, "no-verdict", reasons=verdict.reasons)
    source = GitSource(repo, branch, home)
    source.fetch()
    base = source.resolve(f"refs/heads/{branch}")
    git_dir = source.git_dir
    text = _git(["show", f"{base}:{spec_path}"], git_dir=git_dir, strip=False)
    edited = edit_weights(text, verdict.champion, verdict.winner)
    if edited is None:
        return ProposeResult(service, "unchanged", reasons=[f"{verdict.winner} already has {verdict.champion}'s traffic"])
    new_text, changes = edited
    digest = hashlib.sha256("\0".join((service, spec_path, text, new_text)).encode()).hexdigest()[:10]
    # A local repository whose watched branch is checked out: moving the ref alone would leave that checkout
    # holding the old spec (staged as a change that the user's next commit would silently revert), so the
    # checkout is fast-forwarded with it; one with uncommitted changes gets a proposal branch instead.
    checkout = None if source.remote or not auto_promote else checked_out(git_dir, branch)
    held_back = None
    if checkout is not None and (dirty := _git(["status", "--porcelain", "--untracked-files=no"], cwd=checkout, check=False)):
        held_back = f"{branch} is checked out in {checkout} with uncommitted changes ({len(dirty.splitlines())} file(s))"
        auto_promote = False
    target = branch if auto_promote else f"{PROPOSAL_PREFIX}{service}-{digest}"
    if not auto_promote and _branch_exists(source, target):
        return ProposeResult(service, "exists", target, reasons=[f"{target} already proposes this change"])
    message = commit_message(report, verdict, changes, spec_path)
    with tempfile.TemporaryDirectory(prefix="specd-proposal-") as tmp:
        tree = Path(tmp) / "tree"
        _git(["worktree", "add", "--detach", "--quiet", str(tree), base], git_dir=git_dir)
        try:
            (tree / spec_path).write_text(new_text, encoding="utf-8")
            _validate(tree, env_name, overrides, home, service, {n: b for n, (_, b) in changes.items()})
            _git(["add", "--", spec_path], cwd=tree)
            _git(["commit", "--quiet", "--no-verify", "-m", message], cwd=tree)
            sha = _git(["rev-parse", "HEAD"], cwd=tree)
            if source.remote:
                _git(["push", "--quiet", source.repo, f"{sha}:refs/heads/{target}"], cwd=tree)
                source.fetch()
            elif auto_promote and checkout is not None:  # fails (no fast-forward) if the branch moved since `base`
                _git(["merge", "--ff-only", "--quiet", "--no-verify", sha], cwd=checkout)
            elif auto_promote:
                _git(["update-ref", "-m", "specd: online promotion", f"refs/heads/{target}", sha, base], git_dir=git_dir)
            else:
                _git(["update-ref", "-m", "specd: online promotion proposal", f"refs/heads/{target}", sha, ""], git_dir=git_dir)
        finally:
            _git(["worktree", "remove", "--force", str(tree)], git_dir=git_dir, check=False)
            _git(["worktree", "prune"], git_dir=git_dir, check=False)
    log.info("service %s: %s %s on %s", service, "promoted" if auto_promote else "proposed", verdict.winner, target)
    reasons = [f"{verdict.winner} beats {verdict.champion}"] + ([f"not auto-promoted: {held_back}"] if held_back else [])
    if held_back:
        log.warning("service %s: %s; proposed on %s instead", service, held_back, target)
    return ProposeResult(service, "promoted" if auto_promote else "proposed", target, sha, reasons=reasons)


def checked_out(git_dir: Path, branch: str) -> Path | None:
    """The working tree that has `branch` checked out (None: none, or a bare repository)."""
    tree = None
    for line in _git(["worktree", "list", "--porcelain"], git_dir=git_dir, check=False).splitlines():
        if line.startswith("worktree "):
            tree = Path(line.removeprefix("worktree "))
        elif line == f"branch refs/heads/{branch}" and tree is not None and tree.is_dir():
            return tree
    return None


def _branch_exists(source: Any, name: str) -> bool:
    if source.remote:
        return bool(_git(["ls-remote", "--heads", source.repo, f"refs/heads/{name}"], check=False))
    return bool(_git(["rev-parse", "--verify", "--quiet", f"refs/heads/{name}"], git_dir=source.git_dir, check=False))


# ---------------------------------------------------------------------------------------- the daemon's hook
class ProposalTicker:
    """A daemon tick hook: evaluates each service's rule at most every `check_every_minutes`, off the loop thread."""

    def __init__(self, desired: Callable[[], Any], repo: str, branch: str, env_name: str, home: Path,
                 overrides: tuple[str, ...] = (), clock: Callable[[], float] = time.monotonic):
        self.desired, self.repo, self.branch, self.env_name, self.home = desired, repo, branch, env_name, home
        self.overrides, self.clock = overrides, clock
        self.last: dict[str, float] = {}
        self.thread: threading.Thread | None = None

    def tick(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        desired = self.desired()
        if desired is None:
            return
        due = []
        for doc in desired.composed.docs:
            rule = getattr(getattr(doc.spec, "promotion", None), "online", None) if doc.kind == "service" else None
            if rule is not None and self.clock() - self.last.get(doc.name, -math.inf) >= rule.check_every_minutes * 60:
                self.last[doc.name] = self.clock()
                due.append(doc)
        if due:
            auto = bool(desired.composed.env.auto_promote)
            self.thread = threading.Thread(target=self._run, args=(due, auto), name="specd-proposals", daemon=True)
            self.thread.start()

    def _run(self, docs: list[Any], auto: bool) -> None:
        for doc in docs:
            try:
                result = self.run_one(doc, auto)
                if result is not None and result.action in ("proposed", "promoted"):
                    log.warning("service %s: %s %s", doc.name, result.action, result.branch)
            except Exception:  # a failed proposal must never touch the loop; the next tick tries again
                log.exception("online promotion of service %s failed", doc.name)

    def run_one(self, doc: Any, auto: bool) -> ProposeResult | None:
        live = live_logs(self.home, doc.name)
        if live is None:
            return None
        predictions, feedback, fingerprint, weights = live
        return propose(repo=self.repo, branch=self.branch, env_name=self.env_name, home=self.home, service=doc.name,
                       spec_path=doc.path, spec=doc.spec, predictions=predictions, feedback=feedback,
                       overrides=self.overrides, auto_promote=auto, routing_fingerprint=fingerprint, weights=weights)


def live_logs(home: Path, service: str) -> tuple[Any, Any, str, dict[str, float]] | None:
    """The deployed service's logs (from its live routing file), or None when it is not deployed."""
    from bentos.ab_report import open_logs
    from bentos.routing import read_routing
    from daemon.adapters.services.supervisor import Supervisor
    from daemon.shared.storage_uri import log_options

    try:
        routing = read_routing(Supervisor(Path(home)).routing_file(service))
        settings = routing.settings["prediction_log"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    options = log_options(settings, home)
    predictions, feedback = open_logs(settings["predictions_uri"], settings["feedback_uri"], options)
    return predictions, feedback, routing.fingerprint, {v.name: v.weight for v in routing.variants}
