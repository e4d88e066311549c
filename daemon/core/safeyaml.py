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

Fast path (`load_data`, what compose reads spec files with; positions are not needed until an error
must be reported): most spec files are small, alias-free mappings of plain scalars, and for those the
event-by-event composition above costs twice the parse. `load_data` hands such a text to libyaml's C
composer and builds the plain data in one bounded walk of its nodes, and gives the text to `load`
(above, positions, every error message) whenever it is not *sure* the result is the same:
- no `&` anywhere in the text: without an anchor there is no alias (an alias to an undefined anchor is
  a composer error, which falls back), so no bomb and no shared node can reach the C composer;
- the C composer recurses once per nesting level, so it only sees texts whose nesting is provably
  shallow: every block level needs a larger indentation column (or, once per mapping level, an
  indentless `- `), and every flow level a `[` or `{`, so depth ≤ 2·(longest line + 1) + 2·`[` + `{`,
  which must be ≤ FAST_MAX_NESTING before the C composer runs (libyaml ≥ 0.2.6 also stops at 1,000);
- at most FAST_MAX_CHARS characters: the C composer builds the whole tree before the walk counts it,
  so an oversized file costs the bounded parser's early stop plus at most 64 KiB of C parsing;
- the walk refuses (falls back) past MAX_DEPTH, MAX_NODES, MAX_KEYS, on any key seen twice (compared
  on its text, as `load` does), a merge key, a non-scalar key, a tag outside the core schema's plain
  map/seq/str/null/bool/int/float/timestamp/binary, or any error: constructing is done by the same
  PyYAML constructor functions `load` uses, node by node;
so every text the fast path answers, `load` answers with the same data, and every text it does not, is
`load`'s: errors, lines and messages are unchanged (tests/unit/test_safeyaml_fast.py feeds the hostile
families and random mutations of real specs to both and compares).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = 512 << 10  # 512 KiB per spec, preset or environment file
MAX_DEPTH = 64  # nesting of mappings and sequences (aliases expanded)
MAX_NODES = 50_000  # keys + items + scalars, every alias expanded
MAX_KEYS = 10_000  # mapping keys, every alias expanded
MAX_ALIASES = 1_000  # alias references (`*name`) in one file
FAST_MAX_NESTING = 2_000  # bound on the nesting a text may have for the C composer (see load_data)
FAST_MAX_CHARS = 64 << 10  # larger texts go straight to the bounded parser, which stops at the first limit


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
    with open(path, "rb", buffering=0) as handle:  # read what stat saw (not a `limit`-sized buffer), to EOF
        data = handle.read(st.st_size + 1)
        while len(data) <= limit:
            more = handle.read(limit + 1 - len(data))
            if not more:
                break
            data += more
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
    nodes = keys = aliases = 0  # counted as they enter the document
    duplicates: list[tuple[int, str, str]] = []
    mapping_node, scalar_node, merge_tag = yaml.MappingNode, yaml.ScalarNode, "tag:yaml.org,2002:merge"

    def count(n_nodes: int, n_keys: int, line: int) -> None:
        """Nodes and keys entering the document (an alias brings its whole target again)."""
        nonlocal nodes, keys
        nodes += n_nodes
        keys += n_keys
        if nodes > MAX_NODES:
            raise _limit(line, f"more than {MAX_NODES:,} nodes (aliases expanded): an alias bomb or an oversized file")
        if keys > MAX_KEYS:
            raise _limit(line, f"more than {MAX_KEYS:,} keys (aliases expanded)")

    def attach(node: Any, size: int, height: int, n_keys: int, line: int) -> None:
        """A finished child (node or expanded alias) joins its parent."""
        nonlocal root
        if not stack:
            root = node
            return
        parent = stack[-1]
        parent.size += size
        if height + 1 > parent.height:
            parent.height = height + 1
            if parent.depth + 1 + height > MAX_DEPTH:
                raise _limit(line, f"nesting deeper than {MAX_DEPTH} levels (aliases expanded)")
        parent.keys += n_keys
        if parent.seen is None:  # a sequence
            parent.node.value.append(node)
        elif parent.pending_key is None:
            parent.pending_key = node
            parent.keys += 1
            count(0, 1, line)
            if node.__class__ is scalar_node and node.tag != merge_tag:
                first = parent.seen.get(node.value)
                if first is not None:
                    field = ".".join(str(p) for p in (*parent.path, node.value))
                    duplicates.append((line, field, f"duplicate key {node.value!r} (first at line {first})"))
                else:
                    parent.seen[node.value] = line
        else:
            parent.node.value.append((parent.pending_key, node))
            parent.pending_key = None

    def child_path() -> tuple:
        if not stack:
            return ()
        parent = stack[-1]
        if parent.seen is not None:
            key = parent.pending_key
            return (*parent.path, key.value if isinstance(key, scalar_node) else "?") if key is not None else parent.path
        return (*parent.path, len(parent.node.value))

    while True:
        event = loader.get_event()
        kind = event.__class__
        if kind is yaml.ScalarEvent:
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(scalar_node, event.value, event.implicit)
            node = scalar_node(tag, event.value, event.start_mark, event.end_mark, style=event.style)
            if event.anchor is not None:
                anchors[event.anchor] = _Frame(node, (), len(stack))
            count(1, 0, event.start_mark.line + 1)
            attach(node, 1, 0, 0, event.start_mark.line + 1)
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            line = event.start_mark.line + 1
            if len(stack) + 1 > MAX_DEPTH:
                raise _limit(line, f"nesting deeper than {MAX_DEPTH} levels")
            is_map = kind is yaml.MappingStartEvent
            node_type = mapping_node if is_map else yaml.SequenceNode
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(node_type, None, event.implicit)
            node = node_type(tag, [], event.start_mark, None, flow_style=event.flow_style)
            count(1, 0, line)
            frame = _Frame(node, child_path(), len(stack), seen={} if is_map else None)
            if event.anchor is not None:
                anchors[event.anchor] = None  # open: an alias to it now would be recursive
                frame.anchor = event.anchor
            stack.append(frame)
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            frame = stack.pop()
            frame.node.end_mark = event.end_mark
            if frame.anchor is not None:
                anchors[frame.anchor] = frame
            attach(frame.node, frame.size, frame.height, frame.keys, frame.node.start_mark.line + 1)
        elif kind is yaml.AliasEvent:
            line = event.start_mark.line + 1
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _limit(line, f"more than {MAX_ALIASES:,} alias references")
            if event.anchor not in anchors:
                raise YamlSyntaxError(line, 0, f"YAML syntax error: found undefined alias {event.anchor!r}")
            target = anchors[event.anchor]
            if target is None:
                raise YamlSyntaxError(line, 0, f"YAML syntax error: alias {event.anchor!r} refers to a node that contains it")
            count(target.size, target.keys, line)
            attach(target.node, target.size, target.height, target.keys, line)
        elif kind is yaml.DocumentEndEvent:
            break
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
    except Exception as exc:  # PyYAML's constructors also raise AttributeError (`!!timestamp x`), ...
        raise YamlSyntaxError(_mark_line(node.start_mark), 0, f"YAML error: {exc}") from None
    finally:
        dispose = getattr(loader, "dispose", None)
        if dispose:
            dispose()
    return data, node


_CORE = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = _CORE + "str", _CORE + "map", _CORE + "seq"
_PLAIN_SCALARS = frozenset(_CORE + t for t in ("null", "bool", "int", "float", "timestamp", "binary"))


class _NotSure(Exception):
    """Inside the fast path: let `load` answer this text."""


def load_data(text: str) -> Any:
    """The plain data of one YAML document under the limits, as `load(text)[0]`, faster for the common
    file (see the module docstring). Raises YamlSyntaxError exactly as `load` does."""
    data = _fast(text)
    if data is _DECLINED:
        data, _ = load(text)
    return data


_DECLINED: Any = object()


def _nesting_bound(text: str) -> int:
    longest = max(map(len, text.split("\n")))
    return 2 * (longest + 1) + 2 * text.count("[") + text.count("{")


def _fast(text: str) -> Any:
    """The data, or _DECLINED where `load` must answer."""
    if len(text) > FAST_MAX_CHARS or "&" in text or _nesting_bound(text) > FAST_MAX_NESTING:
        return _DECLINED
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        walk = _Walk(loader)
        data = walk.build(root, 1)
        if walk.nodes > MAX_NODES or walk.keys > MAX_KEYS:
            return _DECLINED
        return data
    except Exception:  # _NotSure, or anything the bounded parser must answer
        return _DECLINED
    finally:
        loader.dispose()


class _Walk:
    """One bounded walk of a C-composed, alias-free node tree into plain data (see the module docstring)."""

    __slots__ = ("loader", "constructors", "nodes", "keys")

    def __init__(self, loader: Any):
        self.loader = loader
        self.constructors = loader.yaml_constructors
        self.nodes = 1
        self.keys = 0

    def scalar(self, node: Any) -> Any:
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag not in _PLAIN_SCALARS:
            raise _NotSure
        return self.constructors[tag](self.loader, node)

    def build(self, node: Any, depth: int) -> Any:
        cls = node.__class__
        if cls is yaml.ScalarNode:
            return self.scalar(node)
        if depth > MAX_DEPTH:
            raise _NotSure
        items = node.value
        scalar_node = yaml.ScalarNode
        if cls is yaml.MappingNode:
            if node.tag != _MAP:
                raise _NotSure
            self.nodes += 2 * len(items)
            self.keys += len(items)
            out = {}
            names: set[str] = set()
            for key, value in items:
                if key.__class__ is not scalar_node or key.value in names:
                    raise _NotSure  # a complex key, or a duplicate: `load` says which
                names.add(key.value)
                out[self.scalar(key)] = value.value if value.__class__ is scalar_node and value.tag == _STR else self.build(value, depth + 1)
            return out
        if node.tag != _SEQ:
            raise _NotSure
        self.nodes += len(items)
        return [v.value if v.__class__ is scalar_node and v.tag == _STR else self.build(v, depth + 1) for v in items]
