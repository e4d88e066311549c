"""Hydra's override grammar (`a.b=1`, `a.list=[1,2]`), for command-line overrides and model candidates.

It sits in the schema layer because candidate overrides are part of a model spec and are checked when the
spec validates; compose uses the same parser for `-o` overrides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from daemon.shared.errors import SpecErrors, SpecIssue


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """Parse Hydra override strings (`a.b=1`, `a.list=[1,2]`) into (dotted key, python value)."""
    if not overrides:
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except Exception as exc:  # hydra raises OverrideParseException with a readable message
            raise SpecErrors([SpecIssue("<override>", 0, text, f"malformed override: {exc}")]) from None
        parsed.append((override.key_or_group, override.value()))
    return parsed
