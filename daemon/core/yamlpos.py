"""Line numbers for YAML keys, so that schema errors can say `file:line`.

OmegaConf and pydantic forget where a value came from. PyYAML's node tree remembers: we walk it once
and map each key path, e.g. ("source", "path") or ("checks", 2, "column"), to its 1-based line.
"""

from __future__ import annotations

from typing import Any

import yaml

from daemon.core.safeyaml import YamlSyntaxError, load

KeyPath = tuple[Any, ...]
__all__ = ["KeyPath", "YamlSyntaxError", "line_for", "parse_with_lines"]


def parse_with_lines(text: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML text (bounded: see safeyaml); return (plain data, {key path: line}). Raises YamlSyntaxError."""
    data, node = load(text)
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def _walk(node: yaml.Node, path: KeyPath, out: dict[KeyPath, int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), out)
            out[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), out)


def line_for(lines: dict[KeyPath, int], path: KeyPath) -> int:
    """Best line for a path: the deepest known prefix (a missing field points at its parent)."""
    for end in range(len(path), -1, -1):
        line = lines.get(tuple(path[:end]))
        if line:
            return line
    return 0
