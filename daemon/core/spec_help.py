"""Schema errors that help: "did you mean", the wrong value echoed, references of files that failed.

A reviewer fixing a rejected commit should need one round: every problem of a file at once (its
unknown references too, although its schema failed), a misspelt key with the closest field name of the
model at that place, and the value that was refused. A value is echoed only when it is written
literally in the file, so a value that came from `${oc.env:...}` never lands in an error text.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from daemon.shared.errors import SpecIssue

_ECHO_MAX = 60


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field annotation can hold (through Optional, unions, lists, dicts, Annotated)."""
    found: list[type[BaseModel]] = []
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            found.append(current)
            continue
        origin = typing.get_origin(current)
        if origin is typing.Annotated:
            stack.append(typing.get_args(current)[0])
        elif origin in (typing.Union, types.UnionType, list, tuple, set, frozenset, dict) or origin is not None:
            args = typing.get_args(current)
            if origin is dict and len(args) == 2:
                stack.append(args[1])
            else:
                stack.extend(args)
    return found


def _names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def field_names_at(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """Field names of the model(s) found at `loc` (pydantic's error location, union tags included)."""
    if model is None:
        return []
    current: list[type[BaseModel]] = [model]
    for part in loc:
        following: list[type[BaseModel]] = []
        for candidate in current:
            fields = {info.alias or name: info for name, info in candidate.model_fields.items()}
            fields.update(candidate.model_fields)
            if isinstance(part, str) and part in fields:
                following.extend(_models_in(fields[part].annotation))
            else:  # an index, a dict key or a union tag: the same models one level on
                following.append(candidate)
        if not following:
            return []
        # a union tag such as "file" selects the member whose `type` literal says so
        tagged = [m for m in following if "type" in m.model_fields and part in (typing.get_args(m.model_fields["type"].annotation) or ())]
        current = tagged or list(dict.fromkeys(following))
    names: list[str] = []
    for candidate in current:
        names.extend(n for n in _names(candidate) if n not in names)
    return names


def _echo(value: Any, text: str) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, int | float | str):
        shown = repr(value)
        if isinstance(value, str) and value not in text:
            return ""  # not written in the file (an interpolation): do not repeat it
        if len(shown) > _ECHO_MAX:
            shown = shown[: _ECHO_MAX - 3] + "..."
        return f" (got {shown})"
    return ""


def pydantic_issues(exc: ValidationError, where: Callable[[tuple], tuple[tuple, str, int, str]],
                    model: type[BaseModel] | None) -> list[SpecIssue]:
    """One SpecIssue per pydantic error. `where(loc)` gives (key path, file, line, file text)."""
    issues = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        key_path, path, line, text = where(loc)
        field_name = ".".join(str(p) for p in key_path)
        message = error["msg"]
        kind = error.get("type", "")
        if kind == "extra_forbidden" and loc:
            import difflib  # here: only a misspelt key needs it, and every `specd plan` would import it

            names = field_names_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
            if close:
                message += f": did you mean {close[0]!r}?"
            elif names:
                message += f" (known keys: {', '.join(names[:16])}{', ...' if len(names) > 16 else ''})"
        elif kind not in ("missing",) and "input" in error:
            message += _echo(error["input"], text)
        issues.append(SpecIssue(path, line, field_name, message))
    return issues


def raw_references(kind: str, data: Any) -> list[tuple[str, str, tuple]]:
    """(kind, name, field) of what a spec refers to, read from its raw data (for a file whose schema
    failed, so its unknown references are reported in the same breath)."""
    refs: list[tuple[str, str, tuple]] = []
    if not isinstance(data, dict):
        return refs

    def get(*path: Any) -> Any:
        node = data
        for part in path:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return None
        return node

    if kind == "table":
        inputs = get("source", "inputs")
        if get("source", "type") == "table" and isinstance(inputs, list):
            refs += [("table", v, ("source", "inputs", i)) for i, v in enumerate(inputs) if isinstance(v, str)]
        joins = get("features", "joins")
        if isinstance(joins, list):
            refs += [("table", j["table"], ("features", "joins", i, "table"))
                     for i, j in enumerate(joins) if isinstance(j, dict) and isinstance(j.get("table"), str)]
    elif kind == "model" and isinstance(get("data", "table"), str):
        refs.append(("table", get("data", "table"), ("data", "table")))
    elif kind == "service" and isinstance(data.get("model"), str):
        refs.append(("model", data["model"], ("model",)))
    elif kind == "dashboard" and isinstance(data.get("resources"), list):
        refs += [(tuple(v.split("/", 1))[0], v.split("/", 1)[1], ("resources", i))
                 for i, v in enumerate(data["resources"]) if isinstance(v, str) and "/" in v]
    return refs
