"""The access policy: `file:line` errors for bad lines, the example policy's decisions, key subjects."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bentos.routing import key_digest as sha256_hex
from daemon.shared.access_policy import ACCESS_DIR, Enforcer, Gate, load_source, validate_policy
from daemon.shared.errors import SpecErrors

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / ACCESS_DIR / "policy.example.csv"
KEYS = {"SPECD_VIEWER_KEY": "viewer-k", "SPECD_OPERATOR_KEY": "operator-k", "SPECD_PREDICT_KEY": "predict-k"}


def write_policy(repo: Path, text: str) -> Path:
    (repo / ACCESS_DIR).mkdir(parents=True, exist_ok=True)
    (repo / ACCESS_DIR / "policy.csv").write_text(text)
    return repo


def example_gate(tmp_path: Path) -> Gate:
    repo = tmp_path / "repo"
    (repo / ACCESS_DIR).mkdir(parents=True)
    shutil.copy(EXAMPLE, repo / ACCESS_DIR / "policy.csv")
    source = load_source(repo)
    assert source is not None
    return Gate.from_source(source, lambda ref: KEYS[ref.removeprefix("secret:")])


def test_no_policy_file_means_no_policy(tmp_path):
    assert load_source(tmp_path) is None


@pytest.mark.parametrize("line, field, message", [
    ("p, role:viewer, daemon, delete, *, allow", "action", "unknown action 'delete'"),
    ("p, role:viewer, clusters, read, *, allow", "resource", "unknown resource 'clusters'"),
    ("p, role:viewer, daemon, read, *, maybe", "effect", "unknown effect 'maybe'"),
    ("p, role:viewer, daemon, read", "p", "expected 'p, subject, resource, action, object, effect'"),
    ("g, key:SPECD_X, role:ghost", "role", "unknown role 'role:ghost'"),
    ("g, key:bad-name!, role:viewer", "subject", "is not key:SECRET"),
    ("x, role:viewer", "type", "unknown line type 'x'"),
])
def test_bad_lines_are_file_line_errors(tmp_path, line, field, message):
    text = "# header\np, role:viewer, daemon, read, *, allow\n\n" + line + "\n"
    with pytest.raises(SpecErrors) as caught:
        load_source(write_policy(tmp_path, text))
    issues = [str(i) for i in caught.value.issues]
    assert any(i.startswith(f"{ACCESS_DIR}/policy.csv:4: {field}: ") and message in i for i in issues), issues


def test_every_problem_is_reported_at_once():
    issues = validate_policy("p, role:a, nope, read, *, allow\np, role:a, daemon, zap, *, allow\n", "p.csv")
    assert [(i.line, i.field) for i in issues] == [(1, "resource"), (2, "action")]


def test_a_broken_model_is_an_error_naming_the_model_file(tmp_path):
    write_policy(tmp_path, "p, role:viewer, daemon, read, *, allow\n")
    (tmp_path / ACCESS_DIR / "model.conf").write_text("[request_definition]\nr = sub\n")
    with pytest.raises(SpecErrors) as caught:
        load_source(tmp_path)
    assert str(caught.value.issues[0]).startswith(f"{ACCESS_DIR}/model.conf:1: casbin: ")


def test_example_policy_decisions(tmp_path):
    gate = example_gate(tmp_path)
    key = lambda name: {"X-API-Key": KEYS[name]}  # noqa: E731
    assert gate.check(key("SPECD_VIEWER_KEY"), "daemon", "read", "status").status == 200
    assert gate.check(key("SPECD_VIEWER_KEY"), "daemon", "sync", "*").status == 403
    assert gate.check(key("SPECD_OPERATOR_KEY"), "daemon", "sync", "*").status == 200
    assert gate.check(key("SPECD_PREDICT_KEY"), "services", "predict", "penguin_api").status == 200
    assert gate.check(key("SPECD_PREDICT_KEY"), "services", "feedback", "penguin_api").status == 403
    assert gate.check({}, "daemon", "read", "status").status == 401
    assert gate.check({"X-API-Key": "nope"}, "daemon", "read", "status").status == 401
    assert gate.check({"Authorization": "Bearer operator-k"}, "daemon", "sync", "*").status == 200


def test_only_key_digests_are_kept_and_decisions_log_no_secret(tmp_path, caplog):
    gate = example_gate(tmp_path)
    assert set(gate.keys) == {sha256_hex(v) for v in KEYS.values()}
    assert not any(v in repr(gate.keys) for v in KEYS.values())
    with caplog.at_level("INFO", logger="specd.access"):
        gate.check({"X-API-Key": "viewer-k"}, "daemon", "sync", "*")
        gate.check({"X-API-Key": "wrong-secret-value"}, "daemon", "read", "status")
    text = caplog.text
    assert "subject=key:SPECD_VIEWER_KEY action=sync resource=daemon/* result=deny" in text
    assert "result=unauthenticated" in text and "sha256:" in text
    assert "viewer-k" not in text and "wrong-secret-value" not in text


def test_memoised_decisions_match_casbin():
    text = EXAMPLE.read_text()
    from daemon.shared.access_policy import DEFAULT_MODEL

    enforcer = Enforcer(DEFAULT_MODEL, text)
    for subject in ("role:viewer", "role:operator", "role:predictor", "role:admin", "key:SPECD_VIEWER_KEY"):
        for action in ("read", "sync", "predict", "feedback", "admin"):
            for _ in range(2):
                assert enforcer.enforce(subject, "daemon", action, "x") == enforcer.raw_enforce(subject, "daemon", action, "x")
    assert enforcer.raw_enforce("role:admin", "daemon", "sync", "x")  # admin inherits operator


def test_specd_validate_reports_policy_lines(spec_repo, tmp_path):
    import subprocess
    import sys

    spec_repo.write(f"{ACCESS_DIR}/policy.csv", "p, role:viewer, daemon, read, *, allow\np, role:viewer, daemon, destroy, *, allow\n")
    result = subprocess.run([sys.executable, "-m", "daemon.cli", "validate", "--repo", str(spec_repo.path), "--home", str(tmp_path / "h")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"{ACCESS_DIR}/policy.csv:2: action: unknown action 'destroy'" in result.stderr


def test_a_policy_change_is_part_of_every_service_fingerprint(tmp_path):
    from daemon.runtime.reconcile import load_desired

    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "specs", repo / "specs")
    shutil.copytree(ROOT / "environments", repo / "environments")
    before = load_desired(repo, "dev", "r1")
    shutil.copy(EXAMPLE, repo / ACCESS_DIR / "policy.csv")
    after = load_desired(repo, "dev", "r2")
    services = [r.key for r in after.graph.resources if r.kind == "service"]
    assert services and after.access is not None and before.access is None
    old, new = before.graph.by_key(), after.graph.by_key()
    for key in services:
        assert old[key].fingerprint != new[key].fingerprint
        assert new[key].data["access_policy"] == after.access.digest[:16] and "access_policy" not in old[key].data
    assert all(old[k].fingerprint == new[k].fingerprint for k in old if k.startswith("table/"))


# -- OIDC bearer tokens --------------------------------------------------------------------------------
def _jwks(tmp_path: Path):
    import json

    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    return key, path


def _token(key, **claims):
    import time

    import jwt

    body = {"sub": "alice", "iss": "https://idp.test", "aud": "specd", "exp": int(time.time()) + 300, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def test_oidc_groups_map_to_roles(tmp_path, monkeypatch):
    from cryptography.hazmat.primitives.asymmetric import rsa

    key, path = _jwks(tmp_path)
    monkeypatch.setenv("SPECD_OIDC_JWKS_FILE", str(path))
    monkeypatch.setenv("SPECD_OIDC_ISSUER", "https://idp.test")
    monkeypatch.setenv("SPECD_OIDC_AUDIENCE", "specd")
    repo = write_policy(tmp_path / "repo", EXAMPLE.read_text() + "g, group:ml-team, role:operator\ng, group:analysts, role:viewer\n")
    gate = Gate.from_source(load_source(repo), lambda ref: KEYS[ref.removeprefix("secret:")])
    bearer = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731
    operator = gate.check(bearer(_token(key, groups=["ml-team"])), "daemon", "sync", "*")
    assert (operator.status, operator.subject) == (200, "user:alice")
    assert gate.check(bearer(_token(key, groups=["analysts"])), "daemon", "sync", "*").status == 403
    assert gate.check(bearer(_token(key, groups=["analysts"])), "daemon", "read", "status").status == 200
    assert gate.check(bearer(_token(key)), "daemon", "read", "status").status == 403  # no group, no role
    assert gate.check(bearer(_token(key, exp=1, groups=["ml-team"])), "daemon", "read", "status").status == 401
    assert gate.check(bearer(_token(key, aud="other", groups=["ml-team"])), "daemon", "read", "status").status == 401
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = gate.check(bearer(_token(other, groups=["ml-team"])), "daemon", "read", "status")
    assert forged.status == 401 and forged.subject == "jwt:InvalidSignatureError"
    import jwt as pyjwt

    unsigned = pyjwt.encode({"sub": "eve", "groups": ["ml-team"], "exp": 9999999999}, None, algorithm="none")
    assert gate.check(bearer(unsigned), "daemon", "read", "status").status == 401
    assert gate.check({"X-API-Key": "viewer-k"}, "daemon", "read", "status").status == 200  # keys still work


def test_without_a_jwks_bearer_jwts_are_refused(tmp_path, monkeypatch):
    key, _ = _jwks(tmp_path)
    monkeypatch.delenv("SPECD_OIDC_JWKS_FILE", raising=False)
    gate = example_gate(tmp_path)
    assert gate.check({"Authorization": f"Bearer {_token(key, groups=['ml-team'])}"}, "daemon", "read", "status").status == 401


def test_warm_decides_every_key_subject_up_front(tmp_path):
    gate = example_gate(tmp_path)
    gate.warm([("daemon", "read", "status"), ("daemon", "sync", "*")])
    memo = gate.enforcer._memo
    assert len(memo) == 6
    assert memo[("key:SPECD_VIEWER_KEY", "daemon", "read", "status")] is True
    assert memo[("key:SPECD_VIEWER_KEY", "daemon", "sync", "*")] is False
