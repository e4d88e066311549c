"""Secret values never leave through side doors: every boundary scrubs what `resolve_secret` returned.

Table-driven over the forms a value takes in text (raw, URL-encoded, JSON-escaped, base64, the bare
token of a `Bearer …`, basic auth's base64 of `user:pass`) and over the boundaries: log records of any
logger (also one with its own handler added later, and tracebacks), a child process (which re-reads the
secrets its parent resolved by name), the journal, ApplyError, action results, the daemon's /metrics
labels and /status, the table failure record.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from daemon.core.executor import ActionResult, execute
from daemon.core.plan import Action, Op, Plan
from daemon.runtime.journal import Journal
from daemon.shared import scrub
from daemon.shared.errors import ApplyError
from daemon.shared.secrets import register_referenced, resolve_secret
from tests.conftest import ROOT

pytestmark = pytest.mark.security
TOKEN = "tok_9fQ2xLm7Vb3Kp8Rz/Wq+1=="  # has characters that URL- and JSON-encoding change


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch):
    scrub.clear()
    monkeypatch.delenv(scrub.NAMES_ENV, raising=False)
    yield
    scrub.clear()


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("UPSTREAM_TOKEN", TOKEN)
    assert resolve_secret("secret:UPSTREAM_TOKEN") == TOKEN  # resolving registers it
    return TOKEN


FORMS = {
    "raw": lambda t: f"401 invalid token {t}",
    "after bearer": lambda t: f"echo: Authorization: Bearer {t}",
    "url-encoded": lambda t: f"GET /items?access_token={quote(t, safe='')}",
    "json-escaped": lambda t: json.dumps({"token": t}),
    "base64": lambda t: f"header {base64.b64encode(t.encode()).decode()}",
    "inside a longer word": lambda t: f"x{t}y",
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_of_a_resolved_secret_is_masked(token: str, form: str):
    text = FORMS[form](token)
    cleaned = scrub.scrub(text)
    assert token not in cleaned and scrub.MASK in cleaned
    assert quote(token, safe="") not in cleaned and base64.b64encode(token.encode()).decode() not in cleaned


def test_basic_auth_and_bearer_values_register_their_inner_forms():
    scrub.register_basic("etl", "s3cr3t-pass")
    basic = base64.b64encode(b"etl:s3cr3t-pass").decode()
    assert scrub.scrub(f"Authorization: Basic {basic}") == f"Authorization: Basic {scrub.MASK}"
    scrub.register("Bearer abcdefghijklmnop")
    assert scrub.scrub("token abcdefghijklmnop leaked") == f"token {scrub.MASK} leaked"


def test_short_values_and_unrelated_text_are_left_alone(token: str):
    scrub.register("ab")  # too short to mask without destroying ordinary text
    assert scrub.scrub("table ab: 3 rows") == "table ab: 3 rows"
    assert scrub.scrub_obj({"a": [1, "fine"], "b": (TOKEN,)}) == {"a": [1, "fine"], "b": (scrub.MASK,)}


def test_log_records_of_every_logger_are_scrubbed(token: str, tmp_path: Path):
    scrub.install()
    path = tmp_path / "own.log"
    own = logging.getLogger("some.library.added.later")
    handler = logging.FileHandler(path)
    own.addHandler(handler)
    own.propagate = False
    try:
        own.error("upstream said %s", f"bad token {token}")
        try:
            raise RuntimeError(f"401: {{'authorization': 'Bearer {token}'}}")
        except RuntimeError:
            own.exception("request failed")
    finally:
        handler.close()
        own.removeHandler(handler)
    text = path.read_text()
    assert token not in text and "upstream said bad token ***" in text and "RuntimeError: 401" in text


def test_child_processes_scrub_the_secrets_their_parent_resolved(token: str):
    import os

    assert os.environ[scrub.NAMES_ENV] == "UPSTREAM_TOKEN"  # names travel, never values
    code = ("import logging, sys; from daemon.shared import scrub; scrub.install(); "
            "logging.basicConfig(stream=sys.stderr); logging.getLogger('child').error('echo %s', sys.argv[1])")
    result = subprocess.run([sys.executable, "-c", code, f"Bearer {token}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert token not in result.stderr and "echo Bearer ***" in result.stderr, result.stderr


def test_journal_apply_error_and_action_results_are_scrubbed(token: str, tmp_path: Path):
    journal = Journal(tmp_path / "events.jsonl")
    journal.append("ActionFailed", "abc", resource="table/t", message=f"GET answered 401: invalid {token}", errors=[token])
    assert token not in (tmp_path / "events.jsonl").read_text()
    assert str(ApplyError(f"table t: {token}")) == "table t: ***"

    async def failing(action: Action):
        raise RuntimeError(f"echo {token}")

    import asyncio

    plan = Plan("r", "dev", (Action("table", "t", Op.CREATE, "new", "fp"),))
    results = asyncio.run(execute(plan, failing, retries=0))
    assert results[0].message == "RuntimeError: echo ***"
    seen: list[ActionResult] = []
    asyncio.run(execute(plan, failing, retries=0, on_result=seen.append))
    assert token not in seen[0].message


def test_metric_labels_and_status_are_scrubbed(token: str):
    from prometheus_client import Counter

    from daemon.runtime.metrics import MetricsServer

    counter = Counter("specd_test_scrub_label", "a label carrying an echoed token", ["check"])
    counter.labels(check=f"x{token}").inc()
    server = MetricsServer("127.0.0.1", 0, lambda: {"message": f"401 {token}"}).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/status", timeout=5) as response:
            status = response.read().decode()
    finally:
        server.stop()
    assert 'specd_test_scrub_label_total{check="x***"}' in metrics and token not in metrics
    assert token not in status and "401 ***" in status


def test_referenced_secrets_are_registered_before_any_action(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DB_URL", "postgresql://app:pw-Zz81kq@db/x")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    data = [{"source": {"type": "sql", "url": "secret:DB_URL"}, "auth": {"api_keys": ["secret:NOT_SET_ANYWHERE"]}}]
    assert register_referenced(data) == 1
    assert scrub.scrub("could not connect to postgresql://app:pw-Zz81kq@db/x") == "could not connect to ***"
    assert scrub.scrub("password pw-Zz81kq") == "password pw-Zz81kq"  # the whole URL is the secret, not its parts


def test_table_build_failure_is_scrubbed_before_it_reaches_status(token: str):
    """A build failure travels as an ApplyError (its reason reaches the Stalled condition): an upstream
    that echoes the bearer token in its 401 body must not put the token there."""
    from types import SimpleNamespace

    from daemon.adapters.tables.adapter import TableAdapter
    from daemon.shared.errors import ApplyError

    adapter = TableAdapter.__new__(TableAdapter)
    adapter.ctx = SimpleNamespace(progress=lambda message: None)
    adapter._readable = lambda name: None
    adapter.job_for = lambda resource, git_sha=None: {}
    adapter._run = lambda job: {"ok": False, "reason": "SourceFailed", "error": f"401 {token}"}
    with pytest.raises(ApplyError) as info:
        adapter.build(SimpleNamespace(name="t", fingerprint="fp"))
    assert token not in str(info.value) and info.value.reason == "SourceFailed"
