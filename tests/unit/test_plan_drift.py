"""`plan._diff` driven by drift reasons (table-driven, in-memory resources) and the reasons in the plan text."""

from __future__ import annotations

import pytest

from daemon.core.graph import Graph, Resource
from daemon.core.plan import Op, _diff, make_plan
from daemon.core.state import MISSING_OBSERVED, Observed


def resource(name: str = "orders", fingerprint: str = "fp-new", kind: str = "table") -> Resource:
    return Resource(f"{kind}/{name}", kind, name, f"specs/{kind}s/{name}.yaml", None, {}, (), fingerprint, 0)


CASES = [
    # (observed, op, reason, drift carried by the action)
    (MISSING_OBSERVED, Op.CREATE, "does not exist yet", ()),
    (Observed(True, "fp-new"), Op.UNCHANGED, "up to date", ()),
    (Observed(True, "fp-old"), Op.UPDATE, "spec changed", ()),
    (Observed(True, "fp-new", drift=("inputs changed",)), Op.UPDATE, "inputs changed", ("inputs changed",)),
    (Observed(True, "fp-new", drift=("process not running",)), Op.UPDATE, "process not running", ("process not running",)),
    (Observed(True, "fp-new", drift=("launch settings changed", "schedule created: refresh every 15 min")), Op.UPDATE,
     "launch settings changed; schedule created: refresh every 15 min", ("launch settings changed", "schedule created: refresh every 15 min")),
    (Observed(True, "fp-old", drift=("edited outside specd (version 4)",)), Op.UPDATE, "spec changed; edited outside specd (version 4)",
     ("edited outside specd (version 4)",)),
    (Observed(True, "fp-old", restorable={"fp-new": "3"}), Op.RESTORE, "an earlier build matches (3); no recompute", ()),
    (Observed(True, "fp-new", drift=("inputs changed",), restorable={"fp-new": "2"}), Op.RESTORE,
     "inputs changed; an earlier build matches (2); no recompute", ("inputs changed",)),
]


@pytest.mark.parametrize(("observed", "op", "reason", "drift"), CASES)
def test_diff_reports_the_reason(observed: Observed, op: Op, reason: str, drift: tuple[str, ...]) -> None:
    action = _diff(resource(), observed)
    assert (action.op, action.reason, action.drift) == (op, reason, drift)
    assert action.previous == observed.fingerprint  # the live fingerprint is what is live, never mangled


def test_the_plan_text_and_json_show_the_drift_reasons() -> None:
    graph = Graph((resource("a"), resource("b")))
    observed = {"table/a": Observed(True, "fp-new", drift=("inputs changed",)), "table/b": Observed(True, "fp-new")}
    seen: list[Observed | None] = []

    def describe(action, res, live):
        seen.append(live)
        return "rebuild"

    plan = make_plan("1234567890ab", "dev", graph, observed, describe=describe)
    assert "~ table a  update     inputs changed — rebuild" in plan.to_text()
    assert [a["drift"] for a in plan.to_json()["actions"]] == [["inputs changed"], []]
    assert seen == [observed["table/a"]]  # describe gets the observation, so it needs no I/O of its own


def test_a_kept_orphan_with_drift_is_updated_and_one_without_is_left_alone() -> None:
    graph = Graph(())
    observed = {"table/gone": Observed(True, "fp", drift=("schedule removed: the spec is gone",)), "table/old": Observed(True, "fp")}
    plan = make_plan("1234567890ab", "dev", graph, observed)
    ops = {a.key: (a.op, a.reason) for a in plan.actions}
    assert ops["table/gone"] == (Op.UPDATE, "spec removed; kept because prune is off; schedule removed: the spec is gone")
    assert ops["table/old"][0] == Op.ORPHAN
    assert make_plan("1234567890ab", "dev", graph, observed, env_prune=True).actions[0].op == Op.DELETE
