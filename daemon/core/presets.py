"""Defaults-list layers merged and `${env.…}` / `${secret:…}` resolved on plain dicts, as OmegaConf would.

Why: building OmegaConf containers costs ~15 ms per spec with presets, so a repository of 1,000 specs
written the README's way (`defaults: [presets/…, _self_]`, `${env.name}`) took 15 s to compose. The
common case needs none of OmegaConf's machinery: the layers are YAML mappings of plain values merged
key by key, and the interpolations point into the environment. This module does exactly that and
answers `None` ("not sure") for anything else — a type change between layers, `???`, a value YAML
types itself (dates, bytes), a relative or self interpolation, a nested or escaped one, `oc.env`, an
unknown environment key — so the caller falls back to OmegaConf and its errors stay the same. Equality
with OmegaConf is tested on random layer stacks and on whole repositories (tests/unit/test_presets.py).
"""

from __future__ import annotations

import re
from typing import Any

from daemon.shared.secrets import secret_marker

_PLAIN = (str, int, float, bool, type(None))
_ENV_REF = re.compile(r"\$\{env((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\}")
_SECRET_REF = re.compile(r"\$\{secret:([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_REF = re.compile(r"\$\{(?:env((?:\.[A-Za-z_][A-Za-z0-9_]*)+)|secret:([A-Za-z_][A-Za-z0-9_]*))\}")
_GRAMMAR_WORDS = {"true", "false", "null", "nan", "inf"}  # OmegaConf would type these resolver arguments
_SPECIAL = re.compile(r"[\\${}]")


class _Unsure(Exception):
    """Raised inside the walk: this value needs OmegaConf."""


def merge_layers(layers: list[dict]) -> dict | None:
    """OmegaConf.merge of the layers (later wins, mappings merged key by key, lists replaced), as new
    plain containers; None where OmegaConf's behaviour is not the plain one."""
    try:
        merged: dict = {}
        for layer in layers:
            _merge_into(merged, layer)
        return merged
    except _Unsure:
        return None


def _merge_into(target: dict, layer: dict) -> None:
    for key, value in layer.items():
        if not isinstance(key, str):
            raise _Unsure
        if value == "???":  # OmegaConf: a missing value never overrides
            raise _Unsure
        if key in target:
            old = target[key]
            if isinstance(old, dict) != isinstance(value, dict) or isinstance(old, list) != isinstance(value, list):
                raise _Unsure  # a mapping or list replaced by another type: OmegaConf has opinions
            if isinstance(value, dict):
                _merge_into(old, value)
                continue
        target[key] = _copy(value)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or item == "???":
                raise _Unsure
            out[key] = _copy(item)
        return out
    if isinstance(value, list):
        return [_copy(item) for item in value]
    if type(value) not in _PLAIN:  # dates, bytes, ...: whatever OmegaConf does with them, it does
        raise _Unsure
    return value


def resolve(data: dict, env_data: dict) -> dict | None:
    """`data` with `${env.a.b}` and `${secret:NAME}` resolved as OmegaConf.to_container(resolve=True) on
    {"env": env_data, "spec": data} would; None when some string needs OmegaConf."""
    try:
        return _resolve(data, env_data)
    except _Unsure:
        return None


def _resolve(value: Any, env_data: dict) -> Any:
    if isinstance(value, dict):
        return {key: _resolve(item, env_data) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, env_data) for item in value]
    if isinstance(value, str) and "${" in value:
        return _interpolate(value, env_data)
    return value


def _interpolate(text: str, env_data: dict) -> Any:
    whole = _ANY_REF.fullmatch(text)
    if whole:
        return _copy_resolved(_lookup(whole, env_data))
    pieces: list[str] = []
    position = 0
    for match in _ANY_REF.finditer(text):
        pieces.append(_literal(text[position:match.start()]))
        value = _lookup(match, env_data)
        if type(value) not in (str, int):  # OmegaConf's str() of floats, bools, None, containers: not ours
            raise _Unsure
        pieces.append(str(value))
        position = match.end()
    pieces.append(_literal(text[position:]))
    return "".join(pieces)


def _literal(segment: str) -> str:
    if _SPECIAL.search(segment):  # escapes, nested or other interpolations, stray braces
        raise _Unsure
    return segment


def _lookup(match: re.Match, env_data: dict) -> Any:
    path, secret = match.group(1), match.group(2)
    if secret is not None:
        if secret.lower() in _GRAMMAR_WORDS:
            raise _Unsure
        return secret_marker(secret)
    node: Any = env_data
    for part in path[1:].split("."):
        if not isinstance(node, dict) or part not in node:
            raise _Unsure  # OmegaConf reports the missing key
        node = node[part]
    return node


def _copy_resolved(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy_resolved(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_resolved(item) for item in value]
    if isinstance(value, str) and "${" in value:  # OmegaConf would resolve it again
        raise _Unsure
    if type(value) not in _PLAIN:
        raise _Unsure
    return value
