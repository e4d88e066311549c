"""The seam between the model adapter's drift check and the daemon's Prefect runs (`AdapterContext.run_monitor`).

A fake runner at our own adapter boundary: it records what a due check asks to run and returns a report
without computing one. The real Prefect path is tests/integration/test_drift_flow_runs.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from daemon.adapters.models.drift import CHECK_FLOW, drift_dir, observe_drift, report_markdown
from daemon.runtime.prefect_monitor import run_monitor_in_prefect
from daemon.runtime.reconcile import context_for
from daemon.schema.environment import EnvironmentSpec
from flows.monitoring.check import DriftReport, write_json
from flows.monitoring.stats import ColumnDrift
from flows.training.registry import Release

REVISION = "0123456789abcdef" * 2 + "01234567"


def _report(checked_at: float) -> DriftReport:
    columns = [ColumnDrift("bill_length_mm", "numeric", "wasserstein", 0.92, 0.1, True, 600),
               ColumnDrift("island", "categorical", "jensenshannon", 0.01, 0.1, False, 600)]
    return DriftReport("penguin_sex", {"table": "gold_penguin_features", "uri": "/lake/gold", "delta_version": 3}, 600, columns,
                       share=0.5, share_threshold=0.1, dataset_drift=True, enough_rows=True, checked_at=checked_at)


def _spec(interval_s: int = 3600) -> Any:
    return SimpleNamespace(monitoring=SimpleNamespace(interval_s=interval_s))


def _ctx(home: Path, runner: Any) -> Any:
    return SimpleNamespace(home=home, env=EnvironmentSpec(name="prod"), revision=REVISION, run_monitor=runner)


def test_a_due_check_goes_through_the_runner_with_its_labels(tmp_path: Path) -> None:
    calls: list[tuple[str, dict[str, str], str]] = []

    def runner(name: str, labels: dict[str, str], fn: Any, describe: Any = None) -> DriftReport:
        report = _report(time.time())
        calls.append((name, labels, describe(report)))
        return report

    release = Release("penguin_sex", "fp1", "penguin_sex:a", (), "", REVISION, created_at=1.0)
    report = observe_drift(_ctx(tmp_path, runner), "penguin_sex", _spec(), release)
    assert report.share == 0.5
    [(name, labels, markdown)] = calls
    assert name == CHECK_FLOW == "specd-drift-check"
    assert labels == {"model": "penguin_sex", "env": "prod", "revision": REVISION[:12]}
    assert "`bill_length_mm`" in markdown and "**yes**" in markdown and "`gold_penguin_features`@3" in markdown


def test_a_fresh_cached_verdict_runs_nothing(tmp_path: Path) -> None:
    release = Release("penguin_sex", "fp1", "penguin_sex:a", (), "", REVISION, created_at=1.0)
    cached = _report(time.time() - 10)
    write_json(drift_dir(tmp_path) / "penguin_sex" / "last.json", {"fingerprint": "fp1", "release_created_at": 1.0, "report": cached.to_json()})

    def runner(*_args: Any, **_kwargs: Any) -> DriftReport:
        raise AssertionError("a check that is not due must not create a run")

    assert observe_drift(_ctx(tmp_path, runner), "penguin_sex", _spec(), release).checked_at == cached.checked_at


def test_markdown_without_enough_rows_says_no_verdict() -> None:
    report = DriftReport("m", {"uri": "/lake/t", "delta_version": 0}, 12, note="12 rows < min_rows 200")
    text = report_markdown(report)
    assert "no verdict" in text and "12 logged rows" in text and "`/lake/t`@0" in text


def test_only_the_daemon_with_prefect_gets_a_runner(tmp_path: Path) -> None:
    desired = SimpleNamespace(composed=SimpleNamespace(env=EnvironmentSpec(name="prod")), checkout=tmp_path, revision=REVISION)
    assert context_for(desired, tmp_path).run_monitor is None  # specd plan / validate / apply
    assert context_for(desired, tmp_path, prefect=False, monitor_runs=True).run_monitor is None  # --no-prefect
    assert context_for(desired, tmp_path, monitor_runs=True).run_monitor is run_monitor_in_prefect


def test_prefect_failing_before_the_check_runs_it_inline(monkeypatch: Any, caplog: Any) -> None:
    from daemon.runtime import prefect_monitor

    async def unreachable(*_args: Any) -> None:
        raise ConnectionError("All connection attempts failed")

    monkeypatch.setattr(prefect_monitor, "_flow_run", unreachable)
    calls: list[int] = []
    result = run_monitor_in_prefect(CHECK_FLOW, {"model": "m"}, lambda: calls.append(1) or "verdict")
    assert result == "verdict" and calls == [1]
    assert "running the check inline" in caplog.text
