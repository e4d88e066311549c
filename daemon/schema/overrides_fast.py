"""The plain subset of Hydra's override grammar, parsed without importing Hydra.

Why: model specs carry candidate overrides (`optim.lr=0.003`, `"model.hidden=[64,32]"`,
`"model={_target_: pkg.Cls}"`), checked when a spec validates; Hydra's ANTLR parser is exact but
importing `hydra` (its package pulls in instantiate, compose, logging config) costs ~0.1 s of CPU, a
fifteenth of a cold `specd plan` of 1,000 specs. These forms need none of it: `key=value` with a dotted
key and a value built from integers, decimal floats, `true`/`false`/`null`, dotted names, and lists and
flat-keyed dicts of those. `parse` answers only texts wholly in that subset, with what Hydra's
`Override.value()` gives (same types, same order); anything else — quotes, escapes, `${…}`, sweeps,
functions, `+`/`~`/`@`/`/`, other spellings of true/inf/nan, `1_000`, exponents, tabs, a duplicate
dict key, deep nesting — is None: the caller asks Hydra, so its errors and values stay Hydra's
(tests/unit/test_overrides_fast.py compares the two on real candidates and random texts).
"""

from __future__ import annotations

import re
from typing import Any

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)\.[0-9]+")
_NAME = _KEY  # a dotted name as a value: Hydra concatenates its ID and '.' tokens into the string
_DICT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORDS = {"true": True, "false": False, "null": None}
_LEXER_WORDS = {"true", "false", "null", "inf", "nan"}  # Hydra types these in any case: only the three above
_TOKEN = re.compile(r" *([\[\]{},:]) *|([^\[\]{},: ]+)")
_MAX_DEPTH = 8


class _Unsure(Exception):
    pass


def parse(text: str) -> tuple[str, Any] | None:
    """(key, value) as Hydra's parser gives them for `text`, or None: not in the plain subset."""
    key, sep, value = text.partition("=")
    if not sep or not _KEY.fullmatch(key) or not value or value[0] == " " or value[-1] == " ":
        return None
    tokens = _tokens(value)
    if tokens is None:
        return None
    try:
        parsed, end = _element(tokens, 0, 0)
    except _Unsure:
        return None
    return (key, parsed) if end == len(tokens) else None


def _tokens(value: str) -> list[str] | None:
    out: list[str] = []
    position = 0
    for match in _TOKEN.finditer(value):
        if match.start() != position:
            return None
        out.append(match.group(1) or match.group(2))
        position = match.end()
    return out if position == len(value) else None


def _element(tokens: list[str], at: int, depth: int) -> tuple[Any, int]:
    if at >= len(tokens) or depth > _MAX_DEPTH:
        raise _Unsure
    token = tokens[at]
    if token == "[":
        items: list[Any] = []
        at += 1
        if at < len(tokens) and tokens[at] == "]":
            return items, at + 1
        while True:
            item, at = _element(tokens, at, depth + 1)
            items.append(item)
            if at < len(tokens) and tokens[at] == ",":
                at += 1
                continue
            if at < len(tokens) and tokens[at] == "]":
                return items, at + 1
            raise _Unsure
    if token == "{":
        mapping: dict[str, Any] = {}
        at += 1
        if at < len(tokens) and tokens[at] == "}":
            return mapping, at + 1
        while True:
            if at + 1 >= len(tokens) or tokens[at + 1] != ":":
                raise _Unsure
            name = tokens[at]
            if not _DICT_KEY.fullmatch(name) or name.lower() in _LEXER_WORDS or name in mapping:
                raise _Unsure
            mapping[name], at = _element(tokens, at + 2, depth + 1)
            if at < len(tokens) and tokens[at] == ",":
                at += 1
                continue
            if at < len(tokens) and tokens[at] == "}":
                return mapping, at + 1
            raise _Unsure
    return _scalar(token), at + 1


def _scalar(token: str) -> Any:
    if token in _WORDS:
        return _WORDS[token]
    if token.lower() in _LEXER_WORDS:
        raise _Unsure
    if len(token) <= 40 and _INT.fullmatch(token):
        return int(token)
    if len(token) <= 40 and _FLOAT.fullmatch(token):
        return float(token)
    if _NAME.fullmatch(token):
        return token
    raise _Unsure
