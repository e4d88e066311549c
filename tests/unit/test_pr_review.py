"""Pull requests that review themselves: the markdown plan of the README's PR journey (golden file), the
approvals it names under the prod policy, CODEOWNERS from the specs' owners, the CI workflow file against
the vendored GitHub workflow schema, and the plain CI script posting then updating ONE comment (against a
fake of GitHub's HTTP API on 127.0.0.1, the only fake here: GitHub itself cannot be reached)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from daemon.cli.main import main
from tests.conftest import ROOT
from tests.helpers.deploy import SHA, example_repo, golden, set_weights

MODEL_SPEC = "specs/models/penguin_sex.yaml"


def _pr(repo) -> None:
    """The README's PR journey: add challenger candidate c, shift traffic 90/10 → 80/20."""
    path = repo.path / MODEL_SPEC
    path.write_text(path.read_text().replace("  logistic: [", '  c: ["optim.lr=0.001"]\n  logistic: [', 1))
    set_weights(repo, 80, 20)
    repo.commit("add challenger c, shift 20 % of traffic to the challenger")


@pytest.fixture
def pr_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ("SPECD_REGISTRY", "SPECD_GPUS", "SPECD_STORAGE_ROOT", "SPECD_SERVICE_PORT_BASE"):
        monkeypatch.delenv(name, raising=False)
    repo = example_repo(tmp_path / "repo")
    _pr(repo)
    return repo


def _plan(repo, tmp_path: Path, capsys, *extra: str) -> str:
    capsys.readouterr()
    code = main(["plan", "--repo", str(repo.path), "--home", str(tmp_path / "no-home"), "--base", "main~1", *extra])
    assert code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_markdown_plan_of_the_pr_journey_is_golden(pr_repo, tmp_path: Path, capsys: pytest.CaptureFixture, env: str) -> None:
    text = _plan(pr_repo, tmp_path, capsys, "--env", env, "--format", "markdown")
    text = text.replace(pr_repo.head()[:12], "<head>").replace(pr_repo.git("rev-parse", "main~1")[:12], "<base>")
    # Panel counts belong to the dashboards' generator, which moves on its own: not this golden file's business.
    golden(f"plans/pr-journey-{env}.md", re.sub(r"publish \d+ panels, \d+ alerts", "publish N panels, M alerts", SHA.sub("<sha>", text)))
    assert text.startswith("<!-- specd-plan -->\n") and len(text) < 60_000
    assert text.count("<details>") == text.count("</details>") >= 3
    summary = text.index("**Plan: ")
    assert summary < text.index("<details>") and summary < text.index("**Training and cost estimates**")
    assert "variants[champion].weight: 90.0 → 80.0" in text
    if env == "prod":
        assert text.index("**Approvals needed**") < text.index("<details>")
        assert "variants[champion].weight: 900 → 800" in text  # the HTTPRoute weight, in per mille


def test_prod_plan_names_the_owners_whose_approval_the_change_needs(pr_repo, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = json.loads(_plan(pr_repo, tmp_path, capsys, "--env", "prod", "--format", "json"))
    approvals = {(a["key"], a["category"]): a["owners"] for a in data["approvals"]}
    assert approvals == {
        ("model/penguin_sex", "train"): ["@acme/ml-engineers"],
        ("service/penguin_api", "traffic"): ["@acme/mlops", "@acme/ml-engineers"],
        ("manifests/penguin_api", "traffic"): ["@acme/mlops", "@acme/ml-engineers"],
    }
    text = _plan(pr_repo, tmp_path, capsys, "--env", "prod")
    assert "Approvals (env prod)" in text and "train    trains model penguin_sex: @acme/ml-engineers" in text
    dev = json.loads(_plan(pr_repo, tmp_path, capsys, "--env", "dev", "--json"))
    assert dev["approvals"] == []  # dev's policy asks for none


def test_codeowners_maps_spec_folders_and_files_to_owners(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    repo = example_repo(tmp_path / "repo")
    args = ["owners", "--repo", str(repo.path), "--home", str(tmp_path / "h"), "--codeowners"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "/specs/models/ @acme/ml-engineers\n" in text  # every model spec has the same owners: the folder
    assert "/specs/services/ @acme/mlops @acme/ml-engineers\n" in text
    assert "/specs/tables/gold_penguin_features.yaml @acme/data-engineers\n" in text  # only that table: the file
    assert "/specs/tables/ " not in text
    (repo.path / "CODEOWNERS").write_text(text)
    assert main([*args, "--check", str(repo.path / "CODEOWNERS")]) == 0
    spec = repo.path / "specs/tables/silver_penguins.yaml"
    spec.write_text(spec.read_text() + "owners: [data team]\n")
    assert main(args) == 1
    err = capsys.readouterr().err
    line = len(spec.read_text().splitlines())
    assert f"specs/tables/silver_penguins.yaml:{line}: owners.0: 'data team' is not @user, @org/team or an email address" in err
    spec.write_text(spec.read_text().replace("[data team]", "[\"@acme/data-engineers\"]"))
    assert main([*args, "--check", str(repo.path / "CODEOWNERS")]) == 1  # the specs moved: regenerate


def test_ci_workflow_passes_the_github_workflow_schema() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(checker), "--builtin-schema", "vendor.github-workflows", str(ROOT / ".ci/github/specd-plan.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = ROOT / ".ci/github/specd-plan.yml"
    broken = bad.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest")
    result = subprocess.run([str(checker), "--builtin-schema", "vendor.github-workflows", "-"], input=broken,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0  # the schema check is not vacuous


class _FakeGitHub(BaseHTTPRequestHandler):
    comments: list[dict] = []
    calls: list[tuple[str, str]] = []

    def _reply(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path))
        page = int(self.path.rsplit("page=", 1)[1]) if "page=" in self.path else 1
        self._reply(200, self.comments if page == 1 else [])

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.headers["Authorization"] == "Bearer test-token"
        self.calls.append(("POST", self.path))
        comment = {"id": 100 + len(self.comments), "body": body["body"]}
        self.comments.append(comment)
        self._reply(201, comment)

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(("PATCH", self.path))
        comment = next(c for c in self.comments if self.path.endswith(f"/{c['id']}"))
        comment["body"] = body["body"]
        self._reply(200, comment)

    def log_message(self, *args: object) -> None:
        pass


def test_ci_script_posts_then_updates_one_comment(pr_repo, tmp_path: Path) -> None:
    _FakeGitHub.comments = [{"id": 7, "body": "an unrelated review comment"}]
    _FakeGitHub.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "SPECD": f"{sys.executable} -m daemon.cli", "SPECD_ENV": "prod", "BASE_REF": pr_repo.git("rev-parse", "main~1"),
               "PYTHONPATH": str(ROOT), "SPECD_HOME": str(tmp_path / "ci-home"), "GITHUB_TOKEN": "test-token",
               "GITHUB_REPOSITORY": "acme/specs", "PR_NUMBER": "12", "GITHUB_API_URL": f"http://127.0.0.1:{server.server_port}",
               "PLAN_FILE": str(tmp_path / "plan.md")}
        first = subprocess.run(["bash", str(ROOT / ".ci/plan-comment.sh")], cwd=pr_repo.path, env=env, capture_output=True, text=True, timeout=180)
        assert first.returncode == 0, first.stderr
        assert "posted plan comment 101" in first.stdout
        set_weights(pr_repo, 70, 30)
        pr_repo.commit("another push to the pull request")
        second = subprocess.run(["bash", str(ROOT / ".ci/plan-comment.sh")], cwd=pr_repo.path, env=env, capture_output=True, text=True, timeout=180)
        assert second.returncode == 0, second.stderr
        assert "updated plan comment 101" in second.stdout
        assert [c["id"] for c in _FakeGitHub.comments] == [7, 101]
        assert "variants[champion].weight: 90.0 → 70.0" in _FakeGitHub.comments[1]["body"]
        assert [m for m, _ in _FakeGitHub.calls] == ["GET", "GET", "POST", "GET", "PATCH"]  # pages until found
        spec = pr_repo.path / "specs/services/penguin_api.yaml"
        spec.write_text(spec.read_text().replace("max_request_rows: 256", "max_request_rows: -1"))
        pr_repo.commit("a broken push")
        third = subprocess.run(["bash", str(ROOT / ".ci/plan-comment.sh")], cwd=pr_repo.path, env=env, capture_output=True, text=True, timeout=180)
        assert third.returncode == 1
        assert "specd validate failed" in _FakeGitHub.comments[1]["body"] and "max_request_rows" in _FakeGitHub.comments[1]["body"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_markdown_puts_warnings_first_and_stays_under_the_comment_limit() -> None:
    from daemon.core.plan import Action, Op, Plan
    from daemon.core.plan_markdown import MAX_CHARS, to_markdown

    actions = tuple(Action("table", f"t{i:05d}", Op.UPDATE, "spec changed", summary="rebuild | from 1 input") for i in range(3000))
    changes = {a.key: tuple(f"columns[c{j}].type: int → float" for j in range(50)) for a in actions}
    plan = Plan("a" * 40, "prod", actions, "b" * 40, changes, warnings=("env var SPECD_X differs from the daemon's",))
    text = to_markdown(plan)
    assert len(text) <= MAX_CHARS + 200 and "truncated" in text
    assert text.index("> [!WARNING]") < text.index("<details>")
    assert text.count("<details>") == text.count("</details>") and text.count("```") % 2 == 0
    assert "rebuild \\| from 1 input" in text  # table cells are escaped
    small = to_markdown(Plan("a" * 40, "prod", actions[:2], None, changes))
    assert small.count("# … 10 more") == 2 and "truncated" not in small  # at most 40 property changes per resource
