"""The embedded Prefect server starts lean (services specd never uses are off, the environment can switch
one back on), and the client is preloaded while it starts (issue 14 item 2)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from daemon.runtime import prefect_server
from daemon.runtime.prefect_server import LEAN_SERVICES, LocalPrefectServer


def test_spawned_server_is_lean_and_the_environment_wins(tmp_path: Path, monkeypatch) -> None:
    seen: dict[str, str] = {}

    class Proc:
        pid = os.getpid()

    def spawn(command, log_path, env):
        seen.update(env)
        return Proc()

    monkeypatch.setattr(prefect_server.procs, "spawn", spawn)
    monkeypatch.setattr(prefect_server.procs, "record_for", lambda proc, meta: prefect_server.procs.PidRecord(proc.pid, 0, meta))
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "true")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    LocalPrefectServer(tmp_path, port=4321)._spawn(tmp_path / "log")
    assert seen["PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED"] == "false"
    assert seen["PREFECT_SERVER_SERVICES_FOREMAN_ENABLED"] == "false"
    assert seen["PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED"] == "true"  # switched back on by the user
    assert "PREFECT_API_URL" not in seen  # the server never talks to another Prefect
    kept = ("SCHEDULER", "TASK_RUN_RECORDER", "EVENT_PERSISTER")  # schedules and what the UI shows of a reconcile
    assert not any(name in key for key in LEAN_SERVICES for name in kept)


def test_lean_settings_are_names_prefect_knows() -> None:
    """A misspelt variable would be silently ignored: each must turn its service off in Prefect's settings."""
    import subprocess

    code = ("import json\nfrom prefect.settings import Settings\ns = Settings().server.services\n"
            "print(json.dumps(sorted(n for n in type(s).model_fields if getattr(getattr(s, n), 'enabled', None) is False)))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **LEAN_SERVICES}, capture_output=True, text=True, check=True).stdout
    off = set(json.loads(out))
    expected = {key.removeprefix("PREFECT_SERVER_SERVICES_").removesuffix("_ENABLED").lower() for key in LEAN_SERVICES}
    assert expected <= off, (expected, off)
