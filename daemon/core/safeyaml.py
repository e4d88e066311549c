"""Bounded YAML: spec files are parsed under limits, so a hostile commit costs milliseconds, not the daemon.

Anyone who can merge a spec can hand the parser a 50 MB file, a billion-laughs alias bomb, 10,000
levels of nesting or bytes that are not UTF-8. PyYAML's C composer recurses once per nesting level (a
deep enough file overflows the C stack) and its constructor shares aliased nodes, so a bomb looks small
until OmegaConf, pydantic or `json.dumps` walks it. So we take only the *events* from libyaml (an
iterative state machine) and compose the node tree here, iteratively, counting as we go: depth, keys and
nodes *with every alias expanded*, alias references. The first limit crossed stops the parse with an
error naming the file and line. The same pass finds duplicate keys in a mapping (YAML says they are an
error; PyYAML lets the last one win silently, so a second `weight:` would override the one a reviewer
read). The file size is checked with `stat` before a byte is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = 1 << 20  # 1 MiB per spec, preset or environment file
MAX_DEPTH = 64  # nesting of mappings and sequences (aliases expanded)
MAX_NODES = 100_000  # keys + items + scalars, every alias expanded
MAX_KEYS = 20_000  # mapping keys, every alias expanded
MAX_ALIASES = 1_000  # alias references (`*name`) in one file


class YamlSyntaxError(ValueError):
    """The text is not acceptable YAML. `problems` holds (line, field, message) of every problem found
    (duplicate keys are all listed); `path` names the file when the reader knows it."""

    def __init__(self, line: int, column: int, message: str, field: str = "",
                 problems: list[tuple[int, str, str]] | None = None, path: str = ""):
        super().__init__(message)
        self.line = line
        self.column = column
        self.field = field
        self.problems = problems or [(line, field, message)]
        self.path = path


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """A spec file's text: a regular file of at most `limit` bytes, UTF-8. Raises YamlSyntaxError."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise YamlSyntaxError(0, 0, f"cannot read the file: {exc.strerror or exc}") from None
    import stat

    if not stat.S_ISREG(st.st_mode):
        raise YamlSyntaxError(0, 0, "not a regular file")
    if st.st_size > limit:
        raise YamlSyntaxError(0, 0, f"file is {st.st_size:,} bytes; spec files are limited to {limit:,} bytes")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise YamlSyntaxError(0, 0, f"file is over {limit:,} bytes; spec files are limited to {limit:,} bytes")
    return decode(data)


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlSyntaxError(
            line, column, f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column {column}"
        ) from None


@dataclass
class _Frame:
    node: Any
    path: tuple
    depth: int
    size: int = 1
    height: int = 0
    keys: int = 0
    pending_key: Any = None  # mappings: the key node waiting for its value
    seen: dict | None = None  # mappings: scalar key -> line of its first occurrence
    anchor: str | None = None


def _mark_line(mark: Any) -> int:
    return mark.line + 1 if mark is not None else 0


def _marked(exc: yaml.MarkedYAMLError) -> YamlSyntaxError:
    # The context mark is where the broken construct starts (an unclosed bracket or quote); the
    # problem mark is where the parser gave up, often the end of the file. Point at the start.
    mark = exc.context_mark or exc.problem_mark
    line = mark.line + 1 if mark else 0
    column = mark.column + 1 if mark else 0
    problem = exc.problem or "invalid YAML"
    if exc.context:
        problem = f"{exc.context} (column {column}): {problem}"
    else:
        problem = f"{problem} (column {column})"
    return YamlSyntaxError(line, column, f"YAML syntax error: {problem}")


def _limit(line: int, message: str) -> YamlSyntaxError:
    return YamlSyntaxError(line, 0, message)


def compose(text: str) -> tuple[Any, Any]:
    """(loader, root node or None) for one YAML document, under the limits. Raises YamlSyntaxError."""
    loader = _Loader(text)
    try:
        return loader, _compose(loader)
    except yaml.MarkedYAMLError as exc:
        raise _marked(exc) from None
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        raise YamlSyntaxError(0, 0, f"YAML syntax error: {exc}") from None


def _compose(loader: Any) -> Any:
    loader.get_event()  # StreamStart
    if loader.check_event(yaml.StreamEndEvent):
        return None
    loader.get_event()  # DocumentStart
    anchors: dict[str, _Frame | None] = {}  # anchor -> finished frame (None while it is still open)
    stack: list[_Frame] = []
    root: Any = None
    totals = {"nodes": 0, "keys": 0, "aliases": 0}
    duplicates: list[tuple[int, str, str]] = []

    def attach(frame: _Frame, line: int) -> None:
        """A finished child (node or expanded alias) joins its parent."""
        nonlocal root
        totals["nodes"] += frame.size if frame.node is not None else 0
        if not stack:
            root = frame.node
            return
        parent = stack[-1]
        parent.size += frame.size
        parent.height = max(parent.height, frame.height + 1)
        parent.keys += frame.keys
        if parent.depth + 1 + frame.height > MAX_DEPTH:
            raise _limit(line, f"nesting deeper than {MAX_DEPTH} levels (aliases expanded)")
        if isinstance(parent.node, yaml.MappingNode):
            if parent.pending_key is None:
                parent.pending_key = frame.node
                parent.keys += 1
                totals["keys"] += 1
                if totals["keys"] > MAX_KEYS:
                    raise _limit(line, f"more than {MAX_KEYS:,} keys (aliases expanded)")
                key = frame.node
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    assert parent.seen is not None
                    first = parent.seen.get(key.value)
                    if first is not None:
                        field = ".".join(str(p) for p in (*parent.path, key.value))
                        duplicates.append((line, field, f"duplicate key {key.value!r} (first at line {first})"))
                    else:
                        parent.seen[key.value] = line
            else:
                parent.node.value.append((parent.pending_key, frame.node))
                parent.pending_key = None
        else:
            parent.node.value.append(frame.node)
        if totals["nodes"] > MAX_NODES:
            raise _limit(line, f"more than {MAX_NODES:,} nodes (aliases expanded): an alias bomb or an oversized file")

    def child_path() -> tuple:
        if not stack:
            return ()
        parent = stack[-1]
        if isinstance(parent.node, yaml.MappingNode):
            key = parent.pending_key
            return (*parent.path, key.value if isinstance(key, yaml.ScalarNode) else "?") if key is not None else parent.path
        return (*parent.path, len(parent.node.value))

    while not loader.check_event(yaml.DocumentEndEvent):
        event = loader.get_event()
        line = _mark_line(event.start_mark)
        depth = len(stack)
        if isinstance(event, yaml.AliasEvent):
            totals["aliases"] += 1
            if totals["aliases"] > MAX_ALIASES:
                raise _limit(line, f"more than {MAX_ALIASES:,} alias references")
            if event.anchor not in anchors:
                raise YamlSyntaxError(line, 0, f"YAML syntax error: found undefined alias {event.anchor!r}")
            target = anchors[event.anchor]
            if target is None:
                raise YamlSyntaxError(line, 0, f"YAML syntax error: alias {event.anchor!r} refers to a node that contains it")
            attach(_Frame(target.node, child_path(), depth, target.size, target.height, target.keys), line)
        elif isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
            frame = _Frame(node, child_path(), depth)
            if event.anchor is not None:
                anchors[event.anchor] = frame
            attach(frame, line)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            if depth + 1 > MAX_DEPTH:
                raise _limit(line, f"nesting deeper than {MAX_DEPTH} levels")
            tag = event.tag
            is_map = isinstance(event, yaml.MappingStartEvent)
            node_type = yaml.MappingNode if is_map else yaml.SequenceNode
            if tag is None or tag == "!":
                tag = loader.resolve(node_type, None, event.implicit)
            node = node_type(tag, [], event.start_mark, None, flow_style=event.flow_style)
            frame = _Frame(node, child_path(), depth, seen={} if is_map else None)
            if event.anchor is not None:
                anchors[event.anchor] = None  # open: an alias to it now would be recursive
                frame.anchor = event.anchor
            stack.append(frame)
        else:  # SequenceEnd / MappingEnd
            frame = stack.pop()
            frame.node.end_mark = event.end_mark
            if frame.anchor is not None:
                anchors[frame.anchor] = frame
            attach(frame, _mark_line(frame.node.start_mark))
    loader.get_event()  # DocumentEnd
    if not loader.check_event(yaml.StreamEndEvent):
        event = loader.peek_event()
        raise YamlSyntaxError(_mark_line(event.start_mark), 0,
                              "YAML syntax error: a spec file holds one document (found a second '---')")
    if duplicates:
        line, field, message = duplicates[0]
        raise YamlSyntaxError(line, 0, message, field, duplicates)
    return root


def load(text: str) -> tuple[Any, Any]:
    """(plain data, root node) of one YAML document under the limits. Raises YamlSyntaxError."""
    loader, node = compose(text)
    if node is None:
        return None, None
    try:
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _marked(exc) from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise YamlSyntaxError(_mark_line(node.start_mark), 0, f"YAML error: {exc}") from None
    finally:
        dispose = getattr(loader, "dispose", None)
        if dispose:
            dispose()
    return data, node
