"""A work-pool run's result, handed from the worker to the daemon as a Prefect artifact of the run.

Why an artifact and not the flow's return value: the flows run with `persist_result=False` (no result
storage to configure on every worker), and an artifact is readable by flow-run id from the API the
daemon already talks to. Training candidates and table builds publish and read their results the same
way, so both sides live here once.
"""

from __future__ import annotations

from typing import Any

RESULT_TYPE = "specd-result"


def publish_result(run_id: str, result: dict[str, Any], description: str) -> None:
    """Worker side: attach `result` to flow run `run_id`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(type=RESULT_TYPE, data=result, flow_run_id=run_id, description=description))


def read_result(client: Any, run_id: str) -> dict[str, Any] | None:
    """Daemon side: the result a worker published for `run_id`, or None (not finished, or died first)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                                                                 type=ArtifactFilterType(any_=[RESULT_TYPE])))
    for artifact in found:
        if isinstance(artifact.data, dict):
            return artifact.data
    return None
