"""Hydra's override grammar (`a.b=1`, `a.list=[1,2]`), for command-line overrides and model candidates.

It sits in the schema layer because candidate overrides are part of a model spec and are checked when the
spec validates; compose uses the same parser for `-o` overrides.

Hydra's ANTLR parser costs ~2 ms per override string, and a repository's model specs repeat the same
candidate overrides (`optim.lr=0.003`, `model.hidden=[64,32]`) in every file: each distinct text is parsed
once per process (the parsed value is copied out, so callers may mutate it).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from daemon.schema import overrides_fast
from daemon.shared.errors import SpecErrors, SpecIssue


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """Parse Hydra override strings (`a.b=1`, `a.list=[1,2]`) into (dotted key, python value)."""
    parsed = []
    for text in overrides:
        key, value, error = _parse_one(text)
        if error is not None:
            raise SpecErrors([SpecIssue("<override>", 0, text, f"malformed override: {error}")])
        parsed.append((key, copy.deepcopy(value)))
    return parsed


@lru_cache(maxsize=4096)
def _parse_one(text: str) -> tuple[str, Any, str | None]:
    """(key, value, None), or ("", None, the parser's message) for a malformed override."""
    plain = overrides_fast.parse(text)  # the plain forms without importing Hydra (same values)
    if plain is not None:
        return plain[0], plain[1], None
    try:
        (override,) = _parser().parse_overrides([text])
    except Exception as exc:  # hydra raises OverrideParseException with a readable message
        return "", None, str(exc)
    return override.key_or_group, override.value(), None


@lru_cache(maxsize=1)
def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()
