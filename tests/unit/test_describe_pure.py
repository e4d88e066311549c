"""`describe` is pure: with every file-system and socket call made to fail, each adapter still describes
every op of every example resource, from the spec and what observe recorded (the model's training preview)."""

from __future__ import annotations

import builtins
import io
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from daemon.core.plan import Action, Op
from daemon.core.state import Observed
from daemon.runtime.reconcile import context_for, load_desired, make_adapters
from tests.conftest import ROOT


class IOAttempted(AssertionError):
    pass


def _refuse(*args, **kwargs):
    raise IOAttempted(f"describe did I/O: {args[:1]}")


@contextmanager
def no_io() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for target, name in ((builtins, "open"), (io, "open"), (os, "open"), (os, "stat"), (os, "lstat"), (os, "scandir"),
                             (os, "listdir"), (socket, "socket"), (socket, "create_connection")):
            patch.setattr(target, name, _refuse)
        yield


def test_every_adapter_describes_without_io(tmp_path: Path) -> None:
    desired = load_desired(ROOT, "dev", "rev1")
    adapters = make_adapters(context_for(desired, tmp_path, prefect=False))
    resources = desired.graph.resources
    preview = {"to_train": ["c"], "reused": ["a", "b"], "minutes": 0.5}
    live = {r.key: Observed(True, "old", details={"preview": preview} if r.kind == "model" else {}) for r in resources}
    texts = {}
    with no_io():
        with pytest.raises(IOAttempted):
            Path(__file__).exists()  # the guard itself works
        for resource in resources:
            for op in (Op.CREATE, Op.UPDATE, Op.RESTORE, Op.DELETE):
                action = Action(resource.kind, resource.name, op, "why", resource.fingerprint, "old", restore_from="3")
                texts[(resource.key, op)] = adapters[resource.kind].describe(action, None if op == Op.DELETE else resource, live[resource.key])
    assert {k for k, _ in texts} == {r.key for r in resources}
    model = next(r.key for r in resources if r.kind == "model")
    assert texts[(model, Op.UPDATE)].startswith("train candidate c on CPU (~0.5 CPU-min), reuse a, b from the store")


def test_the_model_preview_comes_from_observe(tmp_path: Path) -> None:
    desired = load_desired(ROOT, "dev", "rev1")
    adapters = make_adapters(context_for(desired, tmp_path, prefect=False))
    model = next(r for r in desired.graph.resources if r.kind == "model")
    observed = adapters["model"].observe([model])[model.key]
    assert "preview" in observed.details  # no table built yet: the preview records why it cannot say more
    assert "error" in observed.details["preview"]
    text = adapters["model"].describe(Action("model", model.name, Op.CREATE, "new", model.fingerprint), model, observed)
    assert text.startswith(f"train up to {len(model.spec.candidates)} candidate(s)")
