"""Server errors of a routed request reach the prediction log, so the online promotion's error-rate guardrail
sees them: a real `bentoml serve` (deployed through the services adapter, as the daemon does) whose
challenger model fails on every prediction.

The failing model is a real stored model whose fitted preprocessing was edited to emit one column more than
its network takes (a model broken after it was stored): it loads, and every `/predict` routed to it is a 500.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pytest

from daemon.adapters.services.supervisor import Supervisor
from daemon.core.plan import Op
from tests.helpers import services as cs

pytestmark = pytest.mark.integration


def _break(home, tag: str) -> None:
    from daemon.shared.paths import bentoml_home
    from flows.training.artifact import model_dir

    path = model_dir(tag, bentoml_home(home)) / "config.json"
    config = json.loads(path.read_text())
    island = next(c for c in config["preprocessing"]["columns"] if c["name"] == "island")
    island["categories"].append("v3")
    island["width"] += 1
    config["preprocessing"]["output_dim"] += 1
    path.write_text(json.dumps(config))


def test_failed_predictions_are_logged_per_variant_and_block_the_winner(home):
    from bentos.ab_report import build_report, open_logs, query
    from daemon.runtime.proposals import decide
    from daemon.schema.service_promotion import OnlinePromotionSpec

    models = cs.make_models(home, ("a", "b"))
    _break(home, models["b"])
    cs.release(home, "m1", models["a"], (models["b"],))
    port = cs.free_port()
    spec = cs.service_spec(port, workers=1, variants=[{"name": "champion", "role": "champion", "weight": 50},
                                                      {"name": "challenger", "role": "challenger", "weight": 50}])
    try:
        cs.deploy(cs.adapter(home), cs.resource(spec, "fp1"), Op.CREATE)
        statuses: Counter = Counter()
        with httpx.Client(timeout=10) as client:
            for i in range(60):
                answer = client.post(f"http://127.0.0.1:{port}/predict", json={"features": cs.ROW, "user_id": f"u{i}"})
                variant = answer.json().get("variant")
                statuses[(variant, answer.status_code)] += 1
                bad = client.post(f"http://127.0.0.1:{port}/predict", json={"features": {**cs.ROW, "year": "x"}, "user_id": f"u{i}"})
                assert bad.status_code == 400  # a client error: not the variant's, not logged
        assert set(statuses) == {("champion", 200), ("challenger", 500)}, statuses
        settings = json.loads(Supervisor(home).routing_file("penguin_api").read_text())["settings"]["prediction_log"]
        deadline = time.monotonic() + 20
        while True:  # the log flushes every 0.2 s
            totals, buckets = query(*open_logs(settings["predictions_uri"], settings["feedback_uri"]))
            by_name = {t["variant"]: t for t in totals}
            if sum(int(t["requests"]) for t in totals) >= 60 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert by_name["challenger"]["errors"] == statuses[("challenger", 500)] == by_name["challenger"]["requests"]
        assert by_name["champion"]["errors"] == 0 and by_name["champion"]["requests"] == statuses[("champion", 200)]
        report = build_report("penguin_api", totals, buckets)
        challenger = next(v for v in report.variants if v.variant == "challenger")
        assert challenger.error_rate == 1.0 and challenger.latency_p99_ms is None  # failures are not latency samples
        # the guardrail on its own: a challenger that would otherwise win is refused on its error rate
        challenger.feedback, challenger.always_valid_p, challenger.better, challenger.metric = 5000, 1e-9, True, "accuracy"
        champion = next(v for v in report.variants if v.variant == "champion")
        champion.feedback, champion.metric = 5000, "accuracy"
        verdict = decide(report, OnlinePromotionSpec(min_samples=10), 1000.0, 0.01)
        assert verdict.winner is None and any("guardrail: error rate 100.00%" in r for r in verdict.reasons), verdict.reasons
    finally:
        Supervisor(home).stop_all()


def test_a_port_another_process_listens_on_is_named_and_nothing_is_started(home):
    import socket

    from daemon.shared.errors import ApplyError

    models = cs.make_models(home, ("a",))
    cs.release(home, "m1", models["a"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        spec = cs.service_spec(port, workers=1)
        with pytest.raises(ApplyError) as failure:
            cs.deploy(cs.adapter(home), cs.resource(spec, "fp1"), Op.CREATE)
    assert f"port 127.0.0.1:{port} is already in use" in str(failure.value)
    assert failure.value.transient  # the next cycle retries: the port may be freed
    assert Supervisor(home).read_record("penguin_api") is None  # no process was started
