"""Interpolation bombs: `${...}` references are sized before OmegaConf expands them.

YAML aliases are bounded by `safeyaml`, but OmegaConf interpolation is the same attack one level up:
`a1: [${a0}, ${a0}, ...]`, `a2: [${a1}, ...]` copies each referenced container on resolution, so five
levels of nine references take a minute of CPU and eight take all the memory. Before resolving, we
walk the unresolved merged config once and compute, with memoisation, how many nodes every reference
would expand to; past `MAX_NODES` the file is an error naming the key. Resolvers that decode or select
arbitrary text (`oc.decode`, `oc.create`, `oc.select`, `oc.dict.*`) are refused in specs: only
`${oc.env:...}` (guarded), `${secret:...}` and plain references are part of the spec language.
"""

from __future__ import annotations

import re
from typing import Any

from daemon.core.safeyaml import MAX_NODES

ALLOWED_RESOLVERS = ("oc.env", "secret")
REFUSED_RESOLVERS = ("oc.decode", "oc.create", "oc.select", "oc.deprecated", "oc.dict.keys", "oc.dict.values")
_INNER = re.compile(r"\$\{([^${}]*)\}")
_RESOLVER = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*:")
_INDEX = re.compile(r"\[(\d+)\]")


class InterpolationBomb(ValueError):
    def __init__(self, key: tuple, message: str):
        super().__init__(message)
        self.key = key


def refuse(name: str):
    def resolver(*_: Any) -> Any:
        raise ValueError(f"the resolver ${{{name}:...}} is not allowed in specs (allowed: {', '.join(ALLOWED_RESOLVERS)})")

    return resolver


def _references(text: str, key: tuple) -> list[tuple]:
    """Absolute key paths of the node references in one string value at `key`."""
    found = []
    for match in _INNER.finditer(text):
        body = match.group(1).strip()
        if _RESOLVER.match(body):
            continue  # a resolver call: its value is a scalar
        body = _INDEX.sub(r".\1", body)
        dots = len(body) - len(body.lstrip("."))
        parts = tuple(p for p in body.lstrip(".").split(".") if p)
        base = key[:-1][: max(0, len(key) - dots)] if dots else ()
        found.append(base + parts)
    if _INNER.sub("", text).count("${"):
        found.append(("<nested>",))
    return found


def _lookup(root: Any, path: tuple) -> tuple[bool, Any]:
    node = root
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and str(part).isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def check(root: dict[str, Any], start: tuple) -> None:
    """Raise InterpolationBomb when resolving the subtree at `start` of `root` would exceed MAX_NODES."""
    memo: dict[tuple, int] = {}
    visiting: set[tuple] = set()

    def size(node: Any, key: tuple) -> int:
        if key in memo:
            return memo[key]
        if key in visiting:
            return 1  # a cycle: OmegaConf reports it
        visiting.add(key)
        if isinstance(node, dict):
            total = 1 + sum(size(v, key + (k,)) for k, v in node.items())
        elif isinstance(node, list):
            total = 1 + sum(size(v, key + (str(i),)) for i, v in enumerate(node))
        elif isinstance(node, str) and "${" in node:
            total = 1
            for ref in _references(node, key):
                if ref == ("<nested>",):
                    raise InterpolationBomb(key[len(start):], "nested interpolations (${a.${b}}) are not allowed in specs")
                ok, target = _lookup(root, ref)
                if ok:
                    total += size(target, ref)
                if total > MAX_NODES:
                    break
        else:
            total = 1
        visiting.discard(key)
        memo[key] = total
        if total > MAX_NODES:
            shown = ".".join(str(p) for p in key[len(start):]) or "<file>"
            raise InterpolationBomb(key[len(start):], f"interpolations at {shown} expand to more than {MAX_NODES:,} nodes")
        return total

    ok, node = _lookup(root, start)
    if ok:
        size(node, start)
