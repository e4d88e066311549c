"""The second `specd plan` (compose cache file): deferred models load only where read, and what the
plan prints without them is what the models say."""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import replace

import pytest

from daemon.core import deferred
from daemon.core.compose_cache import ComposeCache
from daemon.core.plan import Action, Op, _evolve, _with_summary
from daemon.runtime.reconcile import context_for, load_desired, make_adapters
from tests.unit.test_compose_cache import write_repo


def _desired(repo, cache):
    return load_desired(repo.path, "dev", "HEAD", cache=cache)


def test_dashboards_from_the_cache_file_are_deferred_until_read(spec_repo, tmp_path):
    write_repo(spec_repo)
    path = tmp_path / "compose-dev.bin"
    cache = ComposeCache(path)
    first = _desired(spec_repo, cache)
    cache.save()
    second = _desired(spec_repo, ComposeCache(path))
    cold = {r.key: r for r in first.graph.resources}
    dashboards = [r for r in second.graph.resources if r.kind == "dashboard"]
    assert dashboards and all(type(deferred.raw_spec(r)) is deferred.Deferred for r in dashboards)
    assert [(r.key, r.depends_on, r.fingerprint) for r in second.graph.resources] == [
        (r.key, r.depends_on, r.fingerprint) for r in first.graph.resources]  # references came from the stored ones
    assert all(type(deferred.raw_spec(r)) is deferred.Deferred for r in dashboards)  # the graph loaded none
    for resource in dashboards:
        model = resource.spec  # first read: unpickled, kept
        assert type(model).__name__ == "DashboardSpec" and resource.spec is model
        assert model == cold[resource.key].spec and resource.data == cold[resource.key].data
    doc = next(d for d in ComposeCache(path).memos["derive:dashboard"].values())
    assert type(doc[0]) is deferred.Deferred and pickle.loads(pickle.dumps(doc[0])).blob == doc[0].blob


def test_a_dashboard_plan_line_counted_from_data_matches_its_model(spec_repo, tmp_path):
    write_repo(spec_repo)
    desired = _desired(spec_repo, None)
    adapter = make_adapters(context_for(desired, tmp_path))["dashboard"]
    dashboards = [r for r in desired.graph.resources if r.kind == "dashboard"]
    assert any(r.spec.scrape for r in dashboards) and any(not r.spec.scrape for r in dashboards)  # the platform one scrapes
    for resource in dashboards:
        spec = resource.spec
        what = f"{len(spec.all_panels())} panels, {len(spec.alerts)} alerts"
        if spec.scrape:
            what += f", scrape config for {sum(len(t.targets) for t in spec.scrape)} targets"
        for op, expected in ((Op.CREATE, f"publish {what} to provisioning files"),
                             (Op.RESTORE, f"re-publish the dashboard of h1 ({what}) to provisioning files")):
            assert adapter.describe(Action("dashboard", resource.name, op, "r", restore_from="h1"), resource) == expected


def test_evolve_is_replace():
    action = Action("table", "t", Op.UPDATE, "spec changed", "f1", "f0", None, ("table/u",), 2, "", ("table/u",), ("d",))
    copied = _with_summary(action, "rebuild")
    assert copied == replace(action, summary="rebuild") and hash(copied) == hash(replace(action, summary="rebuild"))
    assert action.summary == "" and copied.key == "table/t"
    assert _evolve(action, follows=("table/v",), reason="r") == replace(action, follows=("table/v",), reason="r")
    with pytest.raises(TypeError):
        _evolve(action, folows=("table/v",))


def test_importing_the_cli_leaves_the_collector_as_it_was():
    script = "import gc, sys; on = sys.argv[1] == '1'; (gc.enable if on else gc.disable)(); import daemon.cli.main; print(gc.isenabled())"
    for state in ("1", "0"):
        out = subprocess.run([sys.executable, "-c", script, state], capture_output=True, text=True, check=True).stdout.strip()
        assert out == str(state == "1")


@pytest.mark.parametrize("argv", [["plan", "--bogus"], ["-h", "plan"], ["plan", "--help"], ["validate", "--format", "x"], ["plan", "extra"]])
def test_plan_without_the_extension_parsers_prints_every_help_and_error_as_the_whole_parser(argv, capsys):
    from daemon.cli.main import build_parser, main

    with pytest.raises(SystemExit) as whole:
        build_parser().parse_args(argv)
    expected = capsys.readouterr()
    with pytest.raises(SystemExit) as got:
        main(argv)
    assert got.value.code == whole.value.code and capsys.readouterr() == expected
    assert "models" in expected.out + expected.err or argv[-1] == "--help"  # the whole parser's text, extensions listed
