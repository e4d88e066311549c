"""The credential detector against a corpus of real-world formats: every positive flagged, no negative.

The tokens are synthetic (random characters in each vendor's documented shape, never a live key) but
realistic: a detector tuned only on `AKIA…EXAMPLE` misses the rest. Negatives are the look-alikes a spec
legitimately holds — UUIDs, sha256 digests, git shas, paths, versions, cron lines, ordinary prose — and
must NOT be flagged (a false positive rejects a valid commit). Covered: `credential_kind` (literal
values), `find_credential_literals` (key names and values in spec data), `guarded_env` (`${oc.env:…}`
judged by value, not only by name) and the environment overlays through `compose`.
"""

from __future__ import annotations

import base64
import random
import string

import pytest

from daemon.core.compose import compose
from daemon.shared.errors import SpecErrors
from daemon.shared.secrets import credential_kind, find_credential_literals, guarded_env, looks_like_secret_value

pytestmark = pytest.mark.security
_rng = random.Random(20261201)


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


UPPER_DIGITS = string.ascii_uppercase + string.digits
B64 = string.ascii_letters + string.digits + "+/"
URLSAFE = string.ascii_letters + string.digits + "-_"
JWT = (base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=") + "."
       + base64.urlsafe_b64encode(b'{"sub":"1234567890","name":"svc","iat":1700000000}').decode().rstrip("=") + "."
       + _rand(43, URLSAFE))

POSITIVES = {
    "aws access key id": "AKIA" + _rand(16, UPPER_DIGITS),
    "aws temporary key id": "ASIA" + _rand(16, UPPER_DIGITS),
    "aws secret in a config line": "aws_secret_access_key = " + _rand(40, B64),
    "github classic pat": "ghp_" + _rand(36),
    "github oauth": "gho_" + _rand(36),
    "github fine-grained pat": "github_pat_11" + _rand(20, UPPER_DIGITS) + "_" + _rand(59),
    "gitlab pat": "glpat-" + _rand(20, URLSAFE),
    "slack bot token": "xoxb-" + _rand(12, string.digits) + "-" + _rand(13, string.digits) + "-" + _rand(24),
    "slack user token": "xoxp-" + _rand(12, string.digits) + "-" + _rand(24),
    "slack webhook": "https://hooks.slack.com/services/T" + _rand(8, UPPER_DIGITS) + "/B" + _rand(8, UPPER_DIGITS) + "/" + _rand(24),
    "stripe live secret": "sk_live_" + _rand(24),
    "stripe restricted": "rk_live_" + _rand(24),
    "google api key": "AIza" + _rand(35, URLSAFE),
    "google oauth access token": "ya29." + _rand(60, URLSAFE),
    "openai key": "sk-proj-" + _rand(48, URLSAFE),
    "anthropic key": "sk-ant-api03-" + _rand(80, URLSAFE),
    "hugging face": "hf_" + _rand(34),
    "npm": "npm_" + _rand(36),
    "pypi": "pypi-AgEIcHlwaS5vcmc" + _rand(60, URLSAFE),
    "sendgrid": "SG." + _rand(22, URLSAFE) + "." + _rand(43, URLSAFE),
    "grafana service account": "glsa_" + _rand(32) + "_" + _rand(8, string.hexdigits.lower()),
    "azure storage connection string": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + _rand(86, B64) + "==",
    "jwt": JWT,
    "pem rsa private key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA" + _rand(40, B64) + "\n-----END RSA PRIVATE KEY-----",
    "pem pkcs8 private key": "-----BEGIN PRIVATE KEY-----\nMIIEvQ" + _rand(40, B64),
    "pem openssh private key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE" + _rand(30, B64),
    "pem encrypted private key": "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0w",
    "postgres url with password": "postgresql://app:" + _rand(16) + "@db.internal:5432/orders",
    "redis url with password": "redis://:" + _rand(20) + "@cache:6379/0",
    "url api_key query": "https://api.example.com/v1/items?limit=100&api_key=" + _rand(32),
    "url access_token query": "https://api.example.com/v1/items?access_token=" + _rand(40, URLSAFE),
    "url token query": "https://api.example.com/export.json?token=" + _rand(24),
    "url signature query": "https://bucket.s3.amazonaws.com/f.csv?X-Amz-Signature=" + _rand(64, string.hexdigits.lower()),
    "bearer header value": "Bearer " + _rand(40, URLSAFE + "."),
    "authorization header line": "Authorization: Bearer " + _rand(32),
    "basic header value": "Basic " + base64.b64encode(f"etl:{_rand(14)}".encode()).decode(),
}

NEGATIVES = {
    "uuid": "3f2b8c4e-9d1a-4e5f-8b7c-6a5d4e3f2b1c",
    "sha256 digest": "sha256:" + _rand(64, "0123456789abcdef"),
    "bare sha256 hex": _rand(64, "0123456789abcdef"),
    "git sha": _rand(40, "0123456789abcdef"),
    "short git sha": _rand(12, "0123456789abcdef"),
    "md5": _rand(32, "0123456789abcdef"),
    "absolute path": "/var/lib/specd/lake/tables/silver_orders",
    "relative data path": "data/orders/2024-03-01/part-0001.parquet",
    "https url without secret": "https://api.example.com/v1/items?limit=100&page=2",
    "s3 url": "s3://analytics-lake/tables/gold_order_daily",
    "url with a user but no password": "https://build@git.example.com/specs.git",
    "url with an interpolated password": "postgresql://app:${secret:DB_PASSWORD}@db:5432/orders",
    "cron": "*/15 * * * *",
    "semver": "2.13.0+cpu",
    "iso timestamp": "2024-03-01T12:34:56.789+00:00",
    "sql": "SELECT order_id, SUM(amount) AS total FROM silver_orders GROUP BY order_id",
    "feature expression": "CASE WHEN body_mass_g > 4000 THEN 'heavy' ELSE 'light' END",
    "prose mentioning tokens": "Token counts are bounded; basic statistics and bearer semantics are documented.",
    "prose with basic word": "basic preprocessing before the gold layer",
    "model tag": "penguin_sex:a-3f2b8c4e9d1a4e5f",
    "python target": "flows.training.models.TabularMLP",
    "secret reference": "secret:GRAFANA_TOKEN",
    "header scheme only": "Bearer",
    "bearer with a reference": "Bearer ${secret:API_TOKEN}",
    "number": "1234567890123456789012",
    "hostname": "prefect-server.internal.example.com",
    "snake-case column": "customer_lifetime_value_2024",
    "base64 of plain text without colon": "Basic " + base64.b64encode(b"notacredential").decode(),
}


@pytest.mark.parametrize("name", sorted(POSITIVES))
def test_real_world_credential_formats_are_flagged(name: str):
    value = POSITIVES[name]
    assert credential_kind(value) is not None, f"{name} not detected: {value!r}"
    assert looks_like_secret_value(value) is not None
    # inside spec data, under an innocent key, it is a validation error naming the key path
    found = list(find_credential_literals({"source": {"description": f"see {value}"}}))
    assert found and found[0][0] == ("source", "description"), name


@pytest.mark.parametrize("name", sorted(NEGATIVES))
def test_look_alikes_are_not_flagged(name: str):
    value = NEGATIVES[name]
    assert credential_kind(value) is None, f"{name} flagged: {value!r} as {credential_kind(value)}"
    assert looks_like_secret_value(value) is None, f"{name} judged a token: {value!r}"
    assert list(find_credential_literals({"description": value, "path": value})) == []


@pytest.mark.parametrize("key", ["password", "db_password", "api_key", "apiKey", "X-Api-Key", "Authorization",
                                 "client_secret", "access_token", "Proxy-Authorization", "private_key", "token"])
def test_secret_looking_keys_with_a_literal_are_flagged(key: str):
    found = list(find_credential_literals({"source": {"headers": {key: "hunter2-not-a-ref"}}}))
    assert found == [(("source", "headers", key), found[0][1])] and "credential literal" in found[0][1]


@pytest.mark.parametrize("value", ["${secret:API_TOKEN}", "secret:API_TOKEN", "Bearer secret:API_TOKEN", ""])
def test_secret_looking_keys_with_a_reference_pass(value: str):
    assert list(find_credential_literals({"headers": {"Authorization": value}, "password": value})) == []


def test_bare_high_entropy_token_is_a_secret_value_but_not_a_literal_error():
    token = _rand(40, URLSAFE)  # no known prefix: only the value check (oc.env) judges it by entropy
    assert looks_like_secret_value(token) == "a high-entropy token"
    assert credential_kind(token) is None


@pytest.mark.parametrize("name", ["GH_CI_VALUE", "DEPLOY_HELPER", "ENDPOINT"])
def test_oc_env_refuses_a_credential_value_under_any_name(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(name, POSITIVES["github classic pat"])
    with pytest.raises(ValueError, match=r"would copy a secret into the config \(its value looks like a GitHub token\)"):
        guarded_env(name)
    monkeypatch.setenv(name, _rand(40, URLSAFE))
    with pytest.raises(ValueError, match="high-entropy token"):
        guarded_env(name)


@pytest.mark.parametrize("value", ["9464", "/srv/specd/lake", "s3://lake/tables", "3f2b8c4e-9d1a-4e5f-8b7c-6a5d4e3f2b1c",
                                   "0123456789abcdef0123456789abcdef01234567", "prod-eu-west-1"])
def test_oc_env_passes_ordinary_values(value: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SPECD_TEST_VALUE", value)
    assert guarded_env("SPECD_TEST_VALUE") == value


def test_oc_env_value_check_reports_file_and_line(spec_repo, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("INNOCENT_NAME", POSITIVES["stripe live secret"])
    spec_repo.write("specs/tables/t.yaml", """
        source: {type: synthetic, rows: 3, seed: 1, columns: [{name: a, kind: int}]}
        description: ${oc.env:INNOCENT_NAME}
    """)
    with pytest.raises(SpecErrors) as info:
        compose(spec_repo.path, "dev")
    text = str(info.value)
    assert "specs/tables/t.yaml:2: description: interpolation:" in text and "Stripe secret key" in text
    assert POSITIVES["stripe live secret"] not in text


def test_environment_overlays_are_checked_for_credential_literals(spec_repo):
    token = POSITIVES["github classic pat"]
    path = spec_repo.path / "environments" / "dev.yaml"
    dev = path.read_text()
    path.write_text(dev.rstrip("\n") + f"\ngrafana:\n  token: {token}\n")
    with pytest.raises(SpecErrors) as info:
        compose(spec_repo.path, "dev")
    issues = [str(i) for i in info.value.issues]
    line = len(dev.rstrip("\n").splitlines()) + 2
    assert any(i.startswith(f"environments/dev.yaml:{line}: grafana.token: looks like a credential literal") for i in issues), issues
    assert all(token not in i for i in issues)
