"""One broken state file degrades only its own resource: table-driven over files and the ways they break.

Real Delta tables built by `specd apply`, then one commit file of one table corrupted in each way a disk
or a person breaks it (truncated mid-line, cut to zero bytes, garbage bytes, not UTF-8, valid JSON that
is no Delta action): `specd plan` exits 0 and lists it, `specd status` shows that table Degraded with a
message naming the file while the others stay Synced/Healthy, and a second `specd apply` refuses to
build over the broken log (naming the file) while it applies everything else. The same for a garbled
routing file, model release, release pointer, daemon status file and journal line, and for an adapter
whose observe raises something nobody foresaw (the generic guard).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from daemon.cli.main import main
from tests.conftest import ROOT, SpecRepo

pytestmark = pytest.mark.security

CORRUPTIONS = {
    "truncated mid-line": lambda raw: raw[: len(raw) // 2],
    "zero bytes": lambda raw: b"",
    "garbage": lambda raw: b"\x00\x17garbage{{{\n",
    "not utf-8": lambda raw: b'{"commitInfo": {"a": "\xff\xfe"}}\n',
    "json but no action": lambda raw: b"[1, 2, 3]\n",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("corrupt")
    repo = SpecRepo(root / "repo")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    shutil.copytree(ROOT / "environments", repo.path / "environments")
    repo.write("data/x.csv", "a,b\n1,2\n3,4\n")
    repo.write("specs/tables/x.yaml", "source: {type: file, path: data/x.csv, format: csv}\n")
    repo.write("specs/tables/y.yaml", "source: {type: synthetic, rows: 5, seed: 1, columns: [{name: v, kind: int}]}\n")
    repo.write("specs/tables/z.yaml", "source: {type: table, inputs: [x], sql: SELECT a FROM x}\n")
    repo.commit("three tables")
    home = root / "home"
    previous = {k: os.environ.get(k) for k in ("SPECD_HOME", "BENTOML_HOME")}
    os.environ.update(SPECD_HOME=str(home), BENTOML_HOME=str(home / "bentoml"))
    try:
        assert main(["apply", "--no-prefect", "--repo", str(repo.path), "--home", str(home)]) == 0
        yield repo, home
    finally:
        from daemon.adapters.tables import workers

        workers.shutdown()
        for key, value in previous.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def _cli(capsys, *args: str, repo: Path, home: Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([args[0], "--repo", str(repo), "--home", str(home), *args[1:]])
    out = capsys.readouterr()
    return code, out.out, out.err


def _status(capsys, repo: Path, home: Path) -> dict[str, dict]:
    code, out, err = _cli(capsys, "status", "--json", repo=repo, home=home)
    assert code == 0, err
    return {f"{r['kind']}/{r['name']}": r for r in json.loads(out)["resources"]}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_a_corrupt_delta_log_degrades_that_table_only(built, capsys, how: str):
    repo, home = built
    log_file = home / "lake" / "tables" / "x" / "_delta_log" / f"{0:020d}.json"
    original = log_file.read_bytes()
    log_file.write_bytes(CORRUPTIONS[how](original))
    try:
        code, out, err = _cli(capsys, "plan", repo=repo.path, home=home)
        assert code == 0, err
        line = next(line for line in out.splitlines() if "table x" in line)
        assert "update" in line and f"not built until repaired — Delta log unreadable: cannot read {log_file}" in line, line
        assert "JSONDecodeError" not in out + err

        status = _status(capsys, repo.path, home)
        x = status["table/x"]
        assert x["health"] == "Degraded" and str(log_file) in x["message"], x
        for key in ("table/y", "table/z"):  # z reads x, but what it was built from is still recorded
            assert (status[key]["sync"], status[key]["health"]) == ("Synced", "Healthy"), status[key]

        code, out, err = _cli(capsys, "apply", "--no-prefect", repo=repo.path, home=home)
        assert code == 1
        failed = next(line for line in err.splitlines() if "table/x" in line)
        assert "FAILED" in failed and str(log_file) in failed and "left as it is" in failed
        assert "table/y" not in err  # nothing else was touched; z follows x (it reads x) and is held, never rebuilt
        assert all("BLOCKED" in line for line in err.splitlines() if "table/z" in line)
        assert log_file.read_bytes() == CORRUPTIONS[how](original)  # never rebuilt over the broken log
    finally:
        log_file.write_bytes(original)
    code, out, _ = _cli(capsys, "plan", "--detailed-exitcode", repo=repo.path, home=home)
    assert code == 0, out  # repaired: everything in sync again


def test_a_corrupt_checkpoint_names_the_file(tmp_path: Path):
    from daemon.shared.corrupt import CorruptState
    from flows.tables.delta_log import read_table_log

    log_dir = tmp_path / "t" / "_delta_log"
    log_dir.mkdir(parents=True)
    (log_dir / f"{5:020d}.checkpoint.parquet").write_bytes(b"PAR1 not really")
    (log_dir / f"{6:020d}.json").write_text('{"commitInfo": {"operation": "WRITE"}}\n')
    with pytest.raises(CorruptState, match=r"00000000000000000005\.checkpoint\.parquet: unreadable checkpoint"):
        read_table_log(str(tmp_path / "t"))


STATE_FILES = {
    "routing file": ("service", "run/services/{name}/routing.json", "routing file unreadable"),
    "release pointer": ("model", "bentoml/specd-releases/{name}/current.json", "release unreadable"),
}


@pytest.mark.parametrize("what", sorted(STATE_FILES))
@pytest.mark.parametrize("how", ["truncated mid-line", "garbage", "zero bytes"])
def test_corrupt_routing_and_release_files_degrade_their_resource(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str, how: str):
    from daemon.adapters.base import AdapterContext
    from daemon.adapters.models.adapter import ModelAdapter
    from daemon.adapters.services.adapter import ServiceAdapter
    from daemon.core.compose import load_environment

    kind, rel, expected = STATE_FILES[what]
    home = tmp_path / "home"
    monkeypatch.setenv("BENTOML_HOME", str(home / "bentoml"))
    ctx = AdapterContext(env=load_environment(ROOT, "dev"), home=home, repo_dir=ROOT, revision="r")
    path = home / rel.format(name="broken")
    path.parent.mkdir(parents=True)
    path.write_bytes(CORRUPTIONS[how](b'{"format": 1, "fingerprint": "abc", "service": "broken", "variants": []}'))
    ok = home / rel.format(name="fine")
    ok.parent.mkdir(parents=True)
    adapter = ServiceAdapter(ctx) if kind == "service" else ModelAdapter(ctx)
    if kind == "model":  # a good release next to the broken one
        from flows.training import registry

        registry.write_release(registry.Release("fine", "fp1", None, (), "kept", "r"), str(home / "bentoml"))
    observed = adapter.observe([])
    broken = observed[f"{kind}/broken"]
    assert broken.health == "Degraded" and expected in broken.message and str(path) in broken.message
    assert broken.exists and broken.fingerprint is None  # the plan re-applies it, which rewrites the file whole
    if kind == "model":
        assert observed["model/fine"].fingerprint == "fp1"


def test_a_corrupt_process_record_is_named(tmp_path: Path):
    from daemon.adapters.base import AdapterContext
    from daemon.adapters.services.adapter import ServiceAdapter
    from daemon.core.compose import load_environment

    home = tmp_path / "home"
    service = home / "run" / "services" / "api"
    service.mkdir(parents=True)
    (service / "routing.json").write_text('{"format": 1, "fingerprint": "fp", "revision": "r", "model": "m", "variants": []}')
    (service / "process.json").write_bytes(b'{"pid": 12, "launch": {"na')
    adapter = ServiceAdapter(AdapterContext(env=load_environment(ROOT, "dev"), home=home, repo_dir=ROOT, revision="r"))
    observed = adapter.observe([])["service/api"]
    assert observed.health == "Degraded" and f"process record unreadable: cannot read {service / 'process.json'}" in observed.message


def test_corrupt_journal_lines_are_skipped(tmp_path: Path):
    from daemon.runtime.journal import Journal

    journal = Journal(tmp_path / "events.jsonl")
    journal.append("ReconcileSucceeded", "a")
    with open(journal.path, "ab") as handle:
        handle.write(b'{"type": "Torn", "rev\n\xff\xfe garbage\n[1,2]\n"just a string"\n')
    journal.append("ReconcileSucceeded", "b")
    assert [e["revision"] for e in journal.read()] == ["a", "b"]
    assert journal.last("ReconcileSucceeded")["revision"] == "b"


def test_status_with_a_corrupt_status_file_reads_the_live_state(built, capsys):
    from daemon.runtime.daemon import DaemonLock
    from daemon.shared.paths import lock_path

    repo, home = built
    (home / "status.json").write_bytes(b'{"revision": "abc", "resour')
    lock = DaemonLock(lock_path(home))  # as if a daemon ran: status reads its status file
    lock.acquire()
    try:
        code, out, err = _cli(capsys, "status", "--json", repo=repo.path, home=home)
    finally:
        lock.release()
        (home / "status.json").unlink()
    assert code == 0 and f"cannot read {home / 'status.json'}" in err
    data = json.loads(out)
    assert data["daemon"] == "running" and {r["name"] for r in data["resources"] if r["kind"] == "table"} == {"x", "y", "z"}


class _Exploding:
    """An adapter with a bug nobody foresaw: observing resource 'bad' raises."""

    kind = "table"

    def observe(self, resources):
        from daemon.core.state import HEALTHY, Observed

        if any(r.name == "bad" for r in resources):
            raise KeyError("specd.fingerprint")
        return {r.key: Observed(True, r.fingerprint, "r", HEALTHY) for r in resources}

    def check(self, resources, graph):
        raise json.JSONDecodeError("Expecting value", "", 0)


def test_the_observe_guard_isolates_an_unforeseen_failure():
    from types import SimpleNamespace

    from daemon.core.graph import Graph
    from daemon.runtime.reconcile import check, observe

    resources = tuple(SimpleNamespace(kind="table", name=n, key=f"table/{n}", fingerprint=f"fp-{n}") for n in ("good", "bad", "also_good"))
    graph = Graph(resources)
    observed = observe({"table": _Exploding()}, graph)
    assert observed["table/good"].fingerprint == "fp-good" and observed["table/also_good"].fingerprint == "fp-also_good"
    assert observed["table/bad"].health == "Degraded"
    assert observed["table/bad"].message == "cannot observe table/bad: KeyError: 'specd.fingerprint'"
    check({"table": _Exploding()}, graph)  # a check that cannot read live state is skipped, not fatal
