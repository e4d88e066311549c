"""Due drift checks in the daemon are `specd-drift-check` Prefect flow runs, through `AdapterContext.run_monitor`.

Real pieces: the session Prefect server (`prefect_api`), a real Delta training table and prediction log, the
real drift check; what the Prefect UI would show is read back through Prefect's REST API. No training: the
release the check compares against is written into the registry directly (its lineage is all a check reads).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from daemon.adapters.models.adapter import ModelAdapter
from daemon.adapters.models.drift import observe_drift
from daemon.core.state import Observed
from daemon.runtime.prefect_monitor import run_monitor_in_prefect
from flows.training import registry
from tests.helpers.drift_runs import NAME, check_runs, monitored, run_artifacts, write_log
from tests.helpers.models import GOLD

pytestmark = pytest.mark.integration


def test_due_check_is_a_flow_run_with_report_and_a_fresh_verdict_creates_none(prefect_api: str, tmp_path: Path) -> None:
    m = monitored(tmp_path / "home", run_monitor_in_prefect)
    write_log(m.ctx.home, m.release.champion, shift_mm=6.0)

    report = observe_drift(m.ctx, NAME, m.resource.spec, m.release)
    assert report.dataset_drift and "bill_length_mm" in [c.column for c in report.drifted()]
    runs = check_runs(prefect_api, m.ctx.revision)
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["state_type"] == "COMPLETED"
    assert {"specd", f"model:{NAME}", "env:test", f"revision:{m.ctx.revision[:12]}"} <= set(run["tags"])
    artifacts = run_artifacts(prefect_api, run["id"])
    assert [a["type"] for a in artifacts] == ["markdown"]
    text = artifacts[0]["data"]
    assert "dataset drift" in text and "`bill_length_mm`" in text and f"{report.share:.3f}" in text
    assert f"{report.current_rows} logged rows" in text and f"`{GOLD}`@0" in text

    # not due (interval_s 3600): the cached verdict, no second run
    again = observe_drift(m.ctx, NAME, m.resource.spec, m.release)
    assert again.checked_at == report.checked_at
    assert len(check_runs(prefect_api, m.ctx.revision)) == 1

    # due again (the interval passed): a second run
    observe_drift(m.ctx, NAME, m.resource.spec, m.release, now=time.time() + 3601)
    assert [r["state_type"] for r in check_runs(prefect_api, m.ctx.revision)] == ["COMPLETED", "COMPLETED"]


def test_a_failing_check_is_a_failed_run_and_observe_goes_on(prefect_api: str, tmp_path: Path) -> None:
    m = monitored(tmp_path / "home", run_monitor_in_prefect)
    log_dir = m.ctx.home / "lake" / "predictions" / "penguin_api" / "_delta_log"
    log_dir.mkdir(parents=True)
    (log_dir / "00000000000000000000.json").write_text("not a delta log\n")  # an unreadable prediction log

    adapter = ModelAdapter(m.ctx)
    registry.write_release(m.release, adapter.root)
    before = Observed(exists=True, fingerprint=m.resource.fingerprint, revision=m.ctx.revision, health="Healthy", message="serving")
    observed = adapter._with_drift(NAME, m.resource, before)  # what the model's observe does for a monitored model
    assert observed.health == "Healthy" and observed.drift == () and observed.message == "serving"
    assert observed.details["drift"].startswith("drift check failed:")

    runs = check_runs(prefect_api, m.ctx.revision)
    assert [r["state_type"] for r in runs] == ["FAILED"]
    artifacts = run_artifacts(prefect_api, runs[0]["id"])
    assert [(a["key"], a["type"]) for a in artifacts] == [("specd-drift-check-penguin-sex", "markdown")]  # no pickled exception
    assert "failed" in artifacts[0]["data"] and "DeltaError" in artifacts[0]["data"]
    assert runs[0]["state"]["message"].startswith("DeltaError")
