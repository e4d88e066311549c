"""What `specd validate` says about a work pool's storage, before any run is submitted.

Why: a pool's workers are other machines. Without `storage.models_uri` they train into the daemon's
BentoML store path, which only works when every server mounts that path (a shared filesystem); with
it, each worker trains into its own store and exports to the models URI. The first is a valid setup,
so it is a warning naming the overlay line, not an error; the second needs nothing more.
"""

from __future__ import annotations

from daemon.adapters.base import AdapterContext
from daemon.core.safeyaml import read_text
from daemon.core.yamlpos import YamlSyntaxError, line_for, parse_with_lines
from daemon.shared.errors import SpecIssue


def overlay_line(ctx: AdapterContext, key_path: tuple[str, ...]) -> tuple[str, int]:
    """(`environments/<env>.yaml`, the line of `key_path` in it, 0 when unknown)."""
    rel = f"environments/{ctx.env.name}.yaml"
    try:
        _, lines = parse_with_lines(read_text(ctx.repo_dir / rel))
    except (OSError, YamlSyntaxError):
        return rel, 0
    return rel, line_for(lines, key_path)


def shared_disk_warning(ctx: AdapterContext) -> SpecIssue | None:
    pool = ctx.env.training.work_pool
    if not pool or ctx.env.storage.models_uri:
        return None
    path, line = overlay_line(ctx, ("training", "work_pool"))
    return SpecIssue(path, line, "training.work_pool",
                     f"work pool {pool!r} without storage.models_uri: its workers write models into the daemon's store "
                     f"path, which every worker must mount (a shared filesystem); set storage.models_uri (s3://bucket/models) "
                     f"so each worker keeps its own store and exports to it")
