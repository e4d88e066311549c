"""`specd apply` once, without the daemon: applies the working tree, shows progress, records the
applied revision so `specd status --json` reports it; a second plan shows no changes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e]


def specd(*args: str, repo, home) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "daemon.cli", *args, "--repo", str(repo), "--home", str(home)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_apply_then_status_and_plan(spec_repo, home):
    spec_repo.write("data/x.csv", "a,b\n1,2\n3,4\n")
    spec_repo.write("specs/tables/x.yaml", "source: {type: file, path: data/x.csv, format: csv}\n")
    sha = spec_repo.commit("x")
    applied = specd("apply", "--no-prefect", repo=spec_repo.path, home=home)
    assert applied.returncode == 0, applied.stderr
    assert "[1/" in applied.stderr and "create table/x: ok" in applied.stderr  # progress on the terminal
    status = json.loads(specd("status", "--json", repo=spec_repo.path, home=home).stdout)
    assert status["revision"] == sha and status["daemon"] == "stopped"
    table = next(r for r in status["resources"] if r["kind"] == "table" and r["name"] == "x")
    assert (table["sync"], table["health"]) == ("Synced", "Healthy")
    again = specd("plan", "--detailed-exitcode", repo=spec_repo.path, home=home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Plan: 0 unchanged." not in again.stdout and "unchanged." in again.stdout
