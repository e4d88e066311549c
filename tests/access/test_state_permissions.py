"""State on disk: the home, its runtime directory and routing/release files are private; specd run and
apply refuse a secrets directory others can read, naming the path and the chmod to run."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bentos.routing import write_json_atomic
from daemon.shared.paths import InsecureSecrets, check_secrets_dir, prepare_home, runtime_dir

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_and_runtime_dir_are_created_0700(tmp_path):
    home = prepare_home(tmp_path / "a" / "home")
    assert mode(home) == 0o700 and mode(runtime_dir(home)) == 0o700


def test_a_loose_home_is_tightened(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    prepare_home(home)
    assert mode(home) == 0o700


def test_routing_and_release_files_are_0600(tmp_path):
    from flows.training.registry import Release, write_release

    write_json_atomic(tmp_path / "run" / "svc" / "routing.json", {"a": 1})
    assert mode(tmp_path / "run" / "svc" / "routing.json") == 0o600
    write_release(Release("m", "fp", "m:a", (), "test", "sha"), root=tmp_path / "store")
    files = list((tmp_path / "store").rglob("*.json"))
    assert files and all(mode(f) == 0o600 for f in files), [(f, oct(mode(f))) for f in files]


def test_secrets_dir_checks(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    secrets.chmod(0o700)
    (secrets / "API_KEY").write_text("x")
    (secrets / "API_KEY").chmod(0o600)
    assert check_secrets_dir({"SPECD_SECRETS_DIR": str(secrets)}) == secrets
    assert check_secrets_dir({}) is None
    (secrets / "API_KEY").chmod(0o644)
    with pytest.raises(InsecureSecrets, match=r"API_KEY \(0o644\).*chmod 700 .*secrets && chmod 600"):
        check_secrets_dir({"SPECD_SECRETS_DIR": str(secrets)})
    (secrets / "API_KEY").chmod(0o600)
    secrets.chmod(0o750)
    with pytest.raises(InsecureSecrets, match=str(secrets)):
        check_secrets_dir({"SPECD_SECRETS_DIR": str(secrets)})


@pytest.mark.parametrize("command", [["run"], ["apply", "--no-prefect"]])
def test_specd_refuses_to_start_on_a_readable_secrets_dir(tmp_path, spec_repo, command):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    secrets.chmod(0o755)
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "daemon.cli", *command, "--repo", str(spec_repo.path), "--home", str(home)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "SPECD_SECRETS_DIR": str(secrets), "HOME": str(tmp_path)},
    )
    assert result.returncode != 0
    assert f"specd {command[0]} refused" in result.stderr and str(secrets) in result.stderr and "chmod 700" in result.stderr
    assert not (home / "daemon.lock").exists()  # refused before taking anything
