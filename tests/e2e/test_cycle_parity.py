"""`specd apply` and the daemon run the same reconcile cycle (`daemon.runtime.cycle.run_cycle`): for the same
commit they write the same journal events and reach the same statuses, failure reasons included."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.cli import main as cli
from daemon.runtime import cycle, daemon
from daemon.runtime.journal import Journal

pytestmark = [pytest.mark.e2e]

FILE = "source: {type: file, path: data/x.csv, format: csv}\n"
CHILD = "source:\n  type: table\n  inputs: [bad]\n  sql: select a from bad\n"
STRIP = {"ts", "duration_s", "via", "pid"}


def _events(home: Path) -> list[tuple]:
    events = [e for e in Journal(home / "events.jsonl").read() if e["type"] not in ("DaemonStarted", "DaemonStopped")]
    return sorted(tuple(sorted((k, str(v).replace(str(home), "HOME")) for k, v in e.items() if k not in STRIP)) for e in events)


def test_apply_and_the_daemon_share_one_cycle(spec_repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_repo.write("data/x.csv", "a,b\n1,2\n30,4\n")
    spec_repo.write("specs/tables/x.yaml", FILE)
    spec_repo.write("specs/tables/bad.yaml", FILE + "quality: {action: fail, columns: {a: {max: 10}}}\n")
    spec_repo.write("specs/tables/child.yaml", CHILD)
    sha = spec_repo.commit("three tables, one failing")

    calls: list[tuple[str, cycle.CycleResult]] = []
    real = cycle.run_cycle

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append((kwargs.get("via") or "daemon", result))
        return result

    monkeypatch.setattr(cli, "run_cycle", spy)  # what `specd apply` calls
    monkeypatch.setattr(daemon, "run_cycle", spy)  # what the daemon loop calls

    by_apply, by_daemon = tmp_path / "home-apply", tmp_path / "home-daemon"
    assert cli.main(["apply", "--no-prefect", "--repo", str(spec_repo.path), "--home", str(by_apply)]) == 1  # one failed
    loop = daemon.Daemon(by_daemon, str(spec_repo.path), "main", "dev", use_prefect=False)
    try:
        loop.cycle()
    finally:
        loop.shutdown()

    assert [via for via, _ in calls] == ["specd apply", "daemon"]
    (_, applied), (_, daemoned) = calls
    assert applied.result == daemoned.result == "failed"
    assert [s.to_json() for s in applied.statuses] == [s.to_json() for s in daemoned.statuses]
    statuses = {s.key: s for s in daemoned.statuses}
    assert statuses["table/x"].sync == "Synced"
    assert {c.type: c.reason for c in statuses["table/bad"].conditions}["Stalled"] == "QualityFailed"
    assert {c.type: c.reason for c in statuses["table/child"].conditions}["Stalled"] == "DependencyNotReady"
    assert _events(by_apply) == _events(by_daemon)
    types = [dict(e)["type"] for e in _events(by_daemon)]
    assert {"ApplyStarted", "ActionSucceeded", "ActionFailed", "ActionBlocked", "StatusChanged"} <= set(types)
    assert all(e["revision"] == sha for e in Journal(by_apply / "events.jsonl").read())
