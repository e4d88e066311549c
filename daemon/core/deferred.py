"""A validated spec model kept pickled until something reads it, so a warm `specd plan` unpickles only
the models it uses.

Why: the compose cache file of 1,000 specs holds ~10⁴ generated dashboard models (rows, panels,
queries), and unpickling a pydantic model costs a Python `__setstate__` call per object — ~⅕ of a
second `specd plan`, which never looks inside those models (a dashboard's plan line is counted from its
normalised data, its references are stored here). The cache writes such a model as a `Deferred`: its
pickle (one bytes object to load) plus its `references()`. `SpecDoc.spec` and `Resource.spec` are
descriptors that turn a `Deferred` into the model on first read and keep it, so every caller sees a
model as before; `references(spec)` answers without unpickling. A generated dashboard is stored as its
normalised data alone (kept beside it anyway) and validated again on first read: pickling ~10⁴ models
was ~¼ of writing the cache file on a cold `specd plan`.
"""

from __future__ import annotations

import pickle
from typing import Any

from daemon.shared.gcpause import paused


class Deferred:
    """A model's pickle and its references, unpickled on first `load`; or, for a model that its own
    normalised data validates back into (`rebuilt_from`), that data and the model's class, validated
    on first `load` — the cache file then holds the data once instead of the data and a pickle."""

    __slots__ = ("blob", "refs", "rebuild")

    def __init__(self, blob: bytes, refs: tuple, rebuild: tuple | None = None):
        self.blob = blob
        self.refs = refs
        self.rebuild = rebuild  # (model class, normalised data) or None

    @classmethod
    def of(cls, model: Any) -> Deferred:
        refs = tuple(model.references()) if hasattr(model, "references") else ()
        from daemon.core.modelpickle import dumps

        return cls(dumps(model), refs)

    @classmethod
    def rebuilt_from(cls, model: Any, data: dict) -> Deferred:
        """For a model equal to `type(model).model_validate(data)` (`data` its `model_dump(mode="json",
        by_alias=True)`; the caller vouches, tests/unit/test_cold_plan_paths.py checks the generated
        dashboards): no pickle of the model is made, which was most of writing a cold plan's cache."""
        refs = tuple(model.references()) if hasattr(model, "references") else ()
        return cls(b"", refs, (type(model), data))

    def load(self) -> Any:
        if self.rebuild is not None:
            model_class, data = self.rebuild
            return model_class.model_validate(data)
        with paused():  # no cycles among a model's objects (daemon/shared/gcpause.py)
            return pickle.loads(self.blob)

    def __reduce__(self) -> tuple:
        return (Deferred, (self.blob, self.refs, self.rebuild))


def references(spec: Any) -> list:
    """`spec.references()` (the spec as stored: a model or a `Deferred`), [] for a kind without any."""
    if type(spec) is Deferred:
        return list(spec.refs)
    return spec.references() if hasattr(spec, "references") else []


class LazySpec:
    """Data descriptor for a frozen dataclass's `spec` field: stores what it is given, and on read turns
    a `Deferred` into its model once (kept in the instance); `raw_spec` reads without loading."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name]
        if type(value) is Deferred:
            value = obj.__dict__[self.name] = value.load()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


def install(cls: type) -> None:
    """Put a `LazySpec` on the `spec` field of an already created dataclass (a descriptor in the class
    body would be taken for the field's default)."""
    descriptor = LazySpec()
    descriptor.__set_name__(cls, "spec")
    cls.spec = descriptor  # type: ignore[attr-defined]


def raw_spec(obj: Any) -> Any:
    """The stored `spec` of a SpecDoc or Resource: the model, or a `Deferred` not loaded yet."""
    return obj.__dict__["spec"]
