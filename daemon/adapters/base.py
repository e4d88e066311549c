"""The adapter contract between the pure core and one live system (Delta, BentoML, Grafana, ...).

`observe` reads actual state from the live system itself (Delta commit metadata, model-store labels,
routing files, dashboard versions) and must be cheap and import-light: `specd plan` calls it. `apply`
performs one planned action idempotently: re-running it after a crash at any point lands in the same
state. The values they exchange with the core (`Observed`, `ApplyOutcome`, health) live in `daemon.core.state`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from daemon.core.state import ApplyOutcome, Observed
from daemon.schema.environment import EnvironmentSpec

if TYPE_CHECKING:
    from daemon.core.graph import Resource
    from daemon.core.plan import Action

T = TypeVar("T")


class MonitorRunner(Protocol):
    """Runs one monitoring check (`fn`) as a run the daemon owns (a Prefect flow run named `name`, tagged
    `key:value` for each label, with `describe(result)` as its markdown artifact) and returns fn's result or
    raises fn's exception. Set by the daemon when Prefect is on; None in `specd plan`/`validate`/`apply`/`--no-prefect`."""

    def __call__(self, name: str, labels: dict[str, str], fn: Callable[[], T], describe: Callable[[T], str] | None = None) -> T: ...


@dataclass(frozen=True)
class AdapterContext:
    env: EnvironmentSpec
    home: Path  # state root ($SPECD_HOME)
    repo_dir: Path  # checkout of the revision being applied
    revision: str  # git sha (or "worktree")
    progress: Callable[[str], None] = lambda message: None
    # The Prefect API this run reads and writes deployments on (None: no Prefect, e.g. --no-prefect).
    prefect_api: str | None = None
    # Monitoring checks that are due run through this (the daemon's Prefect flow runs); None: run inline.
    run_monitor: MonitorRunner | Callable[..., Any] | None = None

    @property
    def storage_root(self) -> str:
        root = self.env.storage.root
        if "://" in root or root.startswith("/"):
            return root
        return str(self.home / root)

    @property
    def data_root(self) -> Path:
        root = Path(self.env.storage.data_root)
        return root if root.is_absolute() else (self.repo_dir / root)


class Adapter(Protocol):
    kind: str

    def observe(self, resources: Sequence[Resource]) -> dict[str, Observed]:
        """Observed state for each desired resource key, plus every other live resource specd manages."""

    def apply(self, action: Action, resource: Resource | None) -> ApplyOutcome:
        """Carry out one action. Raise daemon.shared.errors.ApplyError(transient=...) on failure."""

    def describe(self, action: Action, resource: Resource | None, live: Observed | None = None) -> str:
        """One short line for the plan text (what will happen, rough cost). Pure: no I/O; whatever it
        needs from the live system, observe put into `live.details` (or `live.drift`)."""

    # Optional: def check(self, resources: Sequence[Resource], graph: Graph) -> list[SpecIssue]
    # Checks that need the live systems or other resources (a model's feature columns against its
    # table's schema). Called by plan/validate after observe; issues reject the revision like schema errors.


class Lifecycle(Protocol):
    """A kind's long-lived helper, registered through `Kind.lifecycle`: ticked between cycles, closed on stop."""

    def tick(self) -> None: ...

    def close(self) -> None: ...


def pool_repo_url(ctx: AdapterContext, setting: str) -> str:
    """Where a work pool's workers clone the applied sha from: training.repo_url, else the repository the
    daemon (or the CLI) watches. `setting` names the pool setting in the error (training.work_pool, ...)."""
    import os

    from daemon.shared.errors import ApplyError

    url = ctx.env.training.repo_url or os.environ.get("SPECD_REPO_URL")
    if not url:
        raise ApplyError(f"{setting}: no repository URL for the workers to clone the applied revision from: "
                         "set training.repo_url (or run the daemon, which passes the repository it watches)")
    return url
