"""The access policy kept in Git: a Casbin model and an Argo CD style `policy.csv` under `specs/access/`.

Why here (shared, not core): the daemon's HTTP server and every service worker enforce the same
policy, and the services (an engine) may only import `daemon.shared`. Why we parse the CSV ourselves
before Casbin does: a reviewer needs `policy.csv:7: action: unknown action 'delete'`, and Casbin only
says a line is malformed, if that.

Policy lines (as in Argo CD's RBAC):

    p, role:viewer, daemon, read, *, allow        # subject, resource, action, object glob, effect
    g, key:VIEWER_KEY, role:viewer                # an API key (the secret VIEWER_KEY) gets a role
    g, group:ml-team, role:operator               # an OIDC group (optional) gets a role

OIDC bearer tokens (optional, `daemon.shared.oidc`) are the subjects `user:<sub>` and `group:<g>`.
API-key subjects name a secret (`key:NAME` → the value of `${secret:NAME}`); in memory only the sha256
of each value is kept, mapped to its subject. Decisions are memoised per (subject, resource, action,
object) until the policy's digest changes, which keeps enforcement a dict lookup on the hot path.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.shared.errors import SpecErrors, SpecIssue
from daemon.shared.oidc import InvalidToken, Verifier, looks_like_jwt

log = logging.getLogger("specd.access")
logging.getLogger("casbin").setLevel(logging.WARNING)  # casbin logs its model and every policy load at INFO

ACCESS_DIR = "specs/access"
MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"
RESOURCES = ("tables", "models", "services", "dashboards", "daemon")
ACTIONS = ("read", "plan", "sync", "suspend", "promote", "predict", "feedback", "admin")
EFFECTS = ("allow", "deny")
DEFAULT_MODEL = """\
[request_definition]
r = sub, res, act, obj

[policy_definition]
p = sub, res, act, obj, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub) && r.res == p.res && (p.act == "*" || r.act == p.act) && keyMatch(r.obj, p.obj)
"""
_SUBJECT = re.compile(r"^(role|key|group|user):[A-Za-z0-9_.@-]+$")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class PolicySource:
    """The policy as read from a checkout: texts (no secret in them) and their digest."""

    model: str
    policy: str
    digest: str

    def key_secrets(self) -> list[tuple[str, str]]:
        """(subject, secret name) of every API-key subject."""
        found = []
        for row in _rows(self.policy):
            for cell in row[1][1:]:
                if cell.startswith("key:") and (cell, cell[4:]) not in found:
                    found.append((cell, cell[4:]))
        return found

    def to_settings(self, resolve: Callable[[str], str]) -> dict[str, Any]:
        """What a service receives in its routing file: the texts and the digests of the keys."""
        keys = {}
        for subject, name in self.key_secrets():
            try:
                keys[hashlib.sha256(resolve(f"secret:{name}").encode()).hexdigest()] = subject
            except KeyError:
                log.warning("access: secret %s of %s is not set; that key is refused", name, subject)
        return {"model": self.model, "policy": self.policy, "digest": self.digest, "keys": keys}


def _rows(text: str) -> list[tuple[int, list[str]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        cells = next(csv.reader(io.StringIO(stripped), skipinitialspace=True))
        rows.append((number, [c.strip() for c in cells]))
    return rows


def validate_policy(text: str, path: str) -> list[SpecIssue]:
    """Every problem of a policy.csv as `path:line: field: message`."""
    issues: list[SpecIssue] = []
    roles: set[str] = set()
    grants: list[tuple[int, str]] = []
    for number, cells in _rows(text):
        kind = cells[0]
        if kind == "p":
            if len(cells) != 6:
                issues.append(SpecIssue(path, number, "p", f"expected 'p, subject, resource, action, object, effect', got {len(cells) - 1} field(s)"))
                continue
            _, subject, resource, action, obj, effect = cells
            if not _SUBJECT.match(subject):
                issues.append(SpecIssue(path, number, "subject", f"{subject!r} is not role:NAME, key:SECRET, group:NAME or user:NAME"))
            elif subject.startswith("role:"):
                roles.add(subject)
            if resource not in RESOURCES:
                issues.append(SpecIssue(path, number, "resource", f"unknown resource {resource!r} (one of {', '.join(RESOURCES)})"))
            if action != "*" and action not in ACTIONS:
                issues.append(SpecIssue(path, number, "action", f"unknown action {action!r} (one of {', '.join(ACTIONS)}, or *)"))
            if not obj:
                issues.append(SpecIssue(path, number, "object", "empty object (use * for all)"))
            if effect not in EFFECTS:
                issues.append(SpecIssue(path, number, "effect", f"unknown effect {effect!r} (allow or deny)"))
        elif kind == "g":
            if len(cells) != 3:
                issues.append(SpecIssue(path, number, "g", f"expected 'g, subject, role:NAME', got {len(cells) - 1} field(s)"))
                continue
            subject, role = cells[1], cells[2]
            if not _SUBJECT.match(subject):
                issues.append(SpecIssue(path, number, "subject", f"{subject!r} is not key:SECRET, group:NAME, user:NAME or role:NAME"))
            elif subject.startswith("key:") and not _SECRET_NAME.match(subject[4:]):
                issues.append(SpecIssue(path, number, "subject", f"{subject!r}: key:NAME must name a secret (letters, digits, _)"))
            if not role.startswith("role:"):
                issues.append(SpecIssue(path, number, "role", f"{role!r} is not a role (role:NAME)"))
            else:
                grants.append((number, role))
        else:
            issues.append(SpecIssue(path, number, "type", f"unknown line type {kind!r} (p or g)"))
    for number, role in grants:
        if role not in roles:
            issues.append(SpecIssue(path, number, "role", f"unknown role {role!r} (no 'p, {role}, ...' line defines it)"))
    return issues


def load_source(checkout: Path) -> PolicySource | None:
    """The policy of a checkout, validated (raises SpecErrors), or None when it has none."""
    base = Path(checkout) / ACCESS_DIR
    policy_path, model_path = base / POLICY_FILE, base / MODEL_FILE
    if not policy_path.is_file():
        return None
    rel_policy, rel_model = f"{ACCESS_DIR}/{POLICY_FILE}", f"{ACCESS_DIR}/{MODEL_FILE}"
    policy = policy_path.read_text(encoding="utf-8")
    model = model_path.read_text(encoding="utf-8") if model_path.is_file() else DEFAULT_MODEL
    issues = validate_policy(policy, rel_policy)
    if not issues:
        try:
            Enforcer(model, policy)
        except Exception as exc:  # casbin's own complaint about the model or the policy
            issues.append(SpecIssue(rel_model if model_path.is_file() else rel_policy, 1, "casbin", f"{type(exc).__name__}: {exc}"))
    if issues:
        raise SpecErrors(issues)
    digest = hashlib.sha256(f"{model}\0{policy}".encode()).hexdigest()
    return PolicySource(model, policy, digest)


class Enforcer:
    """A Casbin enforcer over in-memory texts, with decisions memoised."""

    def __init__(self, model_text: str, policy_text: str):
        import casbin
        from casbin import persist

        model = casbin.Enforcer.new_model(text=model_text)
        self._enforcer = casbin.Enforcer(model)
        for _, cells in _rows(policy_text):
            persist.load_policy_line(", ".join(cells), self._enforcer.get_model())
        self._enforcer.build_role_links()
        self._memo: dict[tuple[str, str, str, str], bool] = {}

    def raw_enforce(self, subject: str, resource: str, action: str, obj: str) -> bool:
        return bool(self._enforcer.enforce(subject, resource, action, obj))

    def enforce(self, subject: str, resource: str, action: str, obj: str) -> bool:
        key = (subject, resource, action, obj)
        decision = self._memo.get(key)
        if decision is None:
            if len(self._memo) > 10_000:
                self._memo.clear()
            decision = self._memo[key] = self.raw_enforce(*key)
        return decision


def _verifier() -> Verifier | None:
    """The OIDC verifier of this process; a JWKS that cannot be read refuses bearer JWTs (fail closed)."""
    try:
        return Verifier.from_env()
    except Exception as exc:  # unreadable or malformed JWKS: API keys keep working
        log.error("access: OIDC disabled, the JWKS file cannot be loaded: %s: %s", type(exc).__name__, exc)
        return None


@dataclass
class Decision:
    status: int  # 200, 401 or 403
    subject: str
    message: str = ""


@dataclass
class Gate:
    """The enforcement point: credentials → subject → Casbin decision, each decision logged."""

    enforcer: Enforcer
    keys: Mapping[str, str]  # sha256 of an API key → subject
    digest: str = ""
    logger: logging.Logger = field(default=log)
    verifier: Verifier | None = None  # OIDC bearer tokens (daemon.shared.oidc); None: API keys only

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Gate:
        return cls(Enforcer(settings["model"], settings["policy"]), dict(settings.get("keys") or {}), settings.get("digest", ""),
                   verifier=_verifier())

    @classmethod
    def from_source(cls, source: PolicySource, resolve: Callable[[str], str]) -> Gate:
        return cls.from_settings(source.to_settings(resolve))

    def warm(self, targets: list[tuple[str, str, str]]) -> None:
        """Decide every (API-key subject × target) at load time, so no request pays Casbin's cold cost."""
        for subject in set(self.keys.values()):
            for resource, action, obj in targets:
                self.enforcer.enforce(subject, resource, action, obj)

    def subjects_of(self, headers: Mapping[str, str], key_header: str = "X-API-Key") -> tuple[list[str] | None, str]:
        """(the subjects of the credential presented, or None; a log-safe id of it, '' when none).
        An API key (the key header or `Authorization: Bearer <key>`) is one subject `key:NAME`; a bearer
        JWT, when `SPECD_OIDC_JWKS_FILE` is set, is `user:<sub>` plus `group:<g>` per group."""
        presented = headers.get(key_header) or headers.get(key_header.lower())
        bearer = False
        if not presented:
            auth = headers.get("Authorization") or headers.get("authorization") or ""
            if auth[:7].lower() == "bearer ":
                presented, bearer = auth[7:].strip(), True
        if not presented:
            return None, ""
        if bearer and looks_like_jwt(presented) and self.verifier is not None:
            try:
                subjects = self.verifier.subjects(presented)
            except InvalidToken as exc:
                return None, f"jwt:{exc}"
            return subjects, subjects[0]
        digest = hashlib.sha256(presented.encode()).hexdigest()
        for known, subject in self.keys.items():
            if hmac.compare_digest(known, digest):
                return [subject], subject
        return None, f"sha256:{digest[:8]}"

    def check(self, headers: Mapping[str, str], resource: str, action: str, obj: str, key_header: str = "X-API-Key") -> Decision:
        subjects, shown = self.subjects_of(headers, key_header)
        if subjects is None:
            decision = Decision(401, shown or "anonymous", "invalid credentials" if shown else "missing credentials")
        elif any(self.enforcer.enforce(subject, resource, action, obj) for subject in subjects):
            decision = Decision(200, shown)
        else:
            decision = Decision(403, shown, f"{shown} may not {action} {resource}/{obj}")
        self.logger.info("access subject=%s action=%s resource=%s/%s result=%s", decision.subject, action, resource, obj,
                         {200: "allow", 401: "unauthenticated", 403: "deny"}[decision.status])
        return decision
