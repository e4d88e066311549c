"""The fast YAML path (`safeyaml.load_data`) answers exactly as the bounded parser (`safeyaml.load`).

Why: compose reads every spec file through `load_data`; a text where the two disagreed would change a
plan, or let a hostile file past a limit. The hostile families of tests/security/test_parsing.py, odd
YAML features, and random mutations of real spec texts (characters a hostile commit would use) go to
both; the outcome (the data, or the error's line, column, field, message and problem list) must match,
and typical spec files must really take the fast path (else the speed is silently gone).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from daemon.core import safeyaml
from tests.bench.repo_gen import layout

ROOT = Path(__file__).resolve().parents[2]
REAL = sorted({p.read_text() for p in (ROOT / "specs").rglob("*.yaml")} | {p.read_text() for p in (ROOT / "environments").glob("*.yaml")})
GENERATED = sorted(set(layout(50).values()))


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\ndescription: *a{levels - 1}\n"


def _block(depth: int) -> str:
    return "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "x: 1\n"


def _dashes(depth: int) -> str:
    return "- " * depth + "x\n"


def _indentless(depth: int) -> str:  # a mapping and an indentless sequence per two columns
    return "k0:\n" + "".join("  " * i + f"- k{i + 1}:\n" for i in range(depth)) + "  " * depth + "- x\n"


GOOD = "source:\n  type: file\n  path: specs/data/x.csv\n  format: csv\n"
HOSTILE = {
    "alias_bomb": _bomb(),
    "alias_small": "a: &a [1, 2]\nb: *a\n",
    "alias_scalar_key": "a: &k x\n*k : 2\n",
    "alias_undefined": "a: *nope\n",
    "alias_recursive": "a: &a [1, *a]\n",
    "aliases_many": "a: &a 1\nlist: [" + ", ".join(["*a"] * 1_500) + "]\n",
    "anchor_in_text_only": "description: R&D costs\n" + GOOD,
    "star_without_anchor": "sql: SELECT count(*) FROM t\nx: a * b\n",
    "deep_flow_64": "x: " + "[" * 63 + "]" * 63 + "\n",
    "deep_flow_65": "x: " + "[" * 64 + "]" * 64 + "\n",
    "deep_flow_10k": "x: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "deep_flow_map": "x: " + "{a: " * 70 + "1" + "}" * 70 + "\n",
    "deep_pairs": "x: " + "[a: " * 40 + "1" + "]" * 40 + "\n",
    "deep_block_64": _block(63),
    "deep_block_65": _block(64),
    "deep_block_500": _block(500),
    "deep_dashes_64": _dashes(64),
    "deep_dashes_65": _dashes(65),
    "deep_dashes_900": _dashes(900),
    "deep_indentless": _indentless(40),
    "many_keys_10k": "big: {" + ", ".join(f"k{i}: 1" for i in range(9_999)) + "}\n",
    "many_keys_10001": "big: {" + ", ".join(f"k{i}: 1" for i in range(10_000)) + "}\nz: 1\n",
    "many_nodes": "l:\n" + "".join(f"- {i}\n" for i in range(50_001)),
    "many_nodes_edge": "l:\n" + "".join(f"- {i}\n" for i in range(49_997)),
    "many_keys_small": "big:\n" + "".join(f"  k{i}: 1\n" for i in range(3_000)),
    "oversized_plain": "l: [" + ",".join("1" for _ in range(40_000)) + "]\n",
    "huge_scalar_line": "description: " + "x" * 300_000 + "\n",
    "huge_scalar_folded": "description: >\n" + "".join("  " + "y" * 70 + "\n" for _ in range(4_000)),
    "huge_integer": "n: " + "9" * 10_000 + "\n",
    "huge_integer_ok": "n: " + "9" * 400 + "\n",
    "huge_float": "n: 1e99999\n",
    "duplicate_key": "description: one\n" + GOOD + "description: two\n",
    "duplicate_nested": "source:\n  type: file\n  path: a\n  path: b\n",
    "duplicate_typed": "1: a\n'1': b\n",
    "equal_keys_distinct_text": "1: a\n0x1: b\n1.0: c\n",
    "duplicate_in_flow": "x: {a: 1, a: 2}\n",
    "merge_key": "base: {a: 1}\nx:\n  <<: {a: 2, b: 3}\n  c: 4\n",
    "merge_key_list": "x:\n  <<: [{a: 1}, {b: 2}]\n",
    "merge_key_bad": "x:\n  <<: 3\n",
    "value_key": "=: 1\n",
    "value_value": "a: =\n",
    "complex_key_map": "? {a: 1}\n: x\n",
    "complex_key_seq": "? [a, b]\n: x\n",
    "complex_key_scalar": "? a\n: x\n",
    "python_tag": "description: !!python/object/apply:os.system ['id']\n",
    "python_name": "x: !!python/name:os.system\n",
    "local_tag": "x: !mine 1\n",
    "str_tag_on_map": "source: !!str\n  type: file\n",
    "map_tag_on_scalar": "x: !!map foo\n",
    "set_tag": "x: !!set {a, b}\n",
    "omap_tag": "x: !!omap [{a: 1}, {b: 2}]\n",
    "pairs_tag": "x: !!pairs [{a: 1}]\n",
    "seq_tag_on_map": "x: !!seq {a: 1}\n",
    "explicit_core_tags": "a: !!str 1\nb: !!int '7'\nc: !!float '1.5'\nd: !!bool 'yes'\ne: !!null ''\nf: !!map {x: 1}\ng: !!seq [1]\n",
    "bang_tag": "a: ! 12\nb: ! [1]\n",
    "tag_directive": "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n",
    "tag_directive_core": "%TAG !c! tag:yaml.org,2002:\n---\na: !c!int '5'\nb: !c!str 5\n",
    "yaml_directive": "%YAML 1.1\n---\na: 1\n",
    "yaml_directive_bad": "%YAML 2.0\n---\na: 1\n",
    "timestamps_ok": "d: 2024-01-02\nt: 2024-01-02T03:04:05Z\n",
    "timestamps": "d: 2024-01-02\nt: 2024-01-02T03:04:05Z\nbad: !!timestamp nope\n",
    "binary": "b: !!binary aGVsbG8=\nbad: !!binary '%%%'\n",
    "booleans": "a: yes\nb: No\nc: on\nd: OFF\ne: true\nf: ~\ng: null\nh: .inf\ni: -.Inf\nj: .nan\nk: 0o17\nl: 0x1F\nm: 1_000\nn: 1:20\n",
    "two_documents": GOOD + "---\n" + GOOD,
    "empty_second_document": GOOD + "---\n",
    "document_end": GOOD + "...\n",
    "empty": "",
    "only_comment": "# nothing\n",
    "empty_document": "---\n",
    "explicit_null_doc": "--- ~\n",
    "scalar_doc": "just text\n",
    "list_doc": "- a\n- b\n",
    "tabs_indent": "source:\n\ttype: file\n",
    "tab_in_value": "a: b\tc\nd: 'e\tf'\n",
    "bom": "\ufeff" + GOOD,
    "bom_middle": GOOD + "\ufeffx: 1\n",
    "nul_byte": "a: b\x00c\n",
    "control_char": "a: b\x07c\n",
    "cr_only": GOOD.replace("\n", "\r"),
    "crlf": GOOD.replace("\n", "\r\n"),
    "nel_breaks": "a: 1\x85b: 2\n",
    "line_separator": "a: 1\u2028b: 2\n",
    "unicode_keys": "clé: été\n日本: 語\n",
    "surrogate_escape": 'a: "\\ud800"\n',
    "unclosed_flow": "x: [1, 2\n",
    "unclosed_quote": "x: 'abc\n",
    "bad_indent": "a:\n  b: 1\n c: 2\n",
    "block_scalar": "sql: |\n  SELECT *\n  FROM t\nkeep: |+\n  x\n\nstrip: >-\n  y\n",
    "flow_pairs": "x: [a: 1, b: 2]\n",
    "null_key": "~: 1\nnull: 2\n",
    "bool_keys": "true: 1\nyes: 2\n",
    "long_key": "? " + "k" * 2_000 + "\n: 1\n",
    "interpolations": "a: ${env.name}\nb: ${oc.env:X,1}\nc: '${secret:K}'\n",
}


def outcome(fn, text: str):
    try:
        return ("ok", fn(text))
    except safeyaml.YamlSyntaxError as exc:
        return ("error", exc.line, exc.column, exc.field, str(exc), exc.problems)


def same(a, b) -> bool:
    """Equal outcomes, with NaN equal to itself (YAML's `.nan`)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def slow(text: str):
    return safeyaml.load(text)[0]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_families_answer_the_same_on_both_paths(name):
    text = HOSTILE[name]
    expected, got = outcome(slow, text), outcome(safeyaml.load_data, text)
    assert same(expected, got), (expected, got)


def test_the_fast_path_declines_what_only_the_bounded_parser_may_answer():
    declined = {name for name, text in HOSTILE.items() if safeyaml._fast(text) is safeyaml._DECLINED}
    for must in ("alias_bomb", "alias_small", "aliases_many", "alias_recursive", "alias_undefined", "deep_flow_65",
                 "deep_flow_10k", "deep_block_65", "deep_block_500", "deep_dashes_65", "deep_dashes_900", "many_keys_10001",
                 "many_nodes", "many_nodes_edge", "oversized_plain", "huge_scalar_line", "huge_integer", "duplicate_key", "duplicate_nested", "duplicate_typed",
                 "duplicate_in_flow", "merge_key", "value_key", "value_value", "complex_key_map", "complex_key_seq", "python_tag",
                 "local_tag", "str_tag_on_map", "set_tag", "omap_tag", "two_documents", "tabs_indent", "nul_byte", "unclosed_flow"):
        assert must in declined, must
    for fast in ("star_without_anchor", "deep_flow_64", "deep_block_64", "deep_dashes_64", "many_keys_small", "timestamps_ok",
                 "booleans", "explicit_core_tags", "bom", "crlf", "unicode_keys", "block_scalar", "flow_pairs", "equal_keys_distinct_text"):
        assert fast not in declined, fast


def test_real_and_generated_specs_take_the_fast_path_with_the_same_data():
    for text in REAL + GENERATED:
        data = safeyaml._fast(text)
        assert data is not safeyaml._DECLINED, text[:200]
        assert same(data, slow(text))


def test_nesting_bound_is_an_upper_bound_of_the_real_depth():
    """The C composer recurses per level: the pre-scan must never under-estimate the nesting."""
    for text in [_block(200), _dashes(300), _indentless(100), "x: " + "[a: " * 100 + "1" + "]" * 100, "x: " + "{a: " * 100 + "1" + "}" * 100]:
        loader = safeyaml._Loader(text)
        try:
            depth = _depth(loader.get_single_node())
        finally:
            loader.dispose()
        assert depth <= safeyaml._nesting_bound(text), (depth, text[:80])


def _depth(node) -> int:
    if isinstance(node.value, str):
        return 0
    children = [c for pair in node.value for c in pair] if node.tag.endswith(":map") else node.value
    return 1 + max((_depth(c) for c in children), default=0)


MUTATIONS = ["&a ", "*a", "&", "*", "!", "!!str ", "!!int ", "!!python/tuple ", "<<: ", "=", "? ", "[", "]", "{", "}", ",", ":", ": ",
             "- ", "#", "'", '"', "\t", "\r", "\x00", "\ufeff", "\u2028", "\x85", "---\n", "...\n", "%YAML 1.1\n", "|\n", ">\n",
             "\n", "  ", "0x1", "1e9", "~", "yes", "2024-01-01", "${env.name}", "é"]


@pytest.mark.parametrize("seed", range(4))
def test_random_mutations_of_real_specs_answer_the_same(seed):
    """Inputs nobody wrote down: real spec texts with hostile fragments inserted, lines duplicated
    (duplicate keys), re-indented or cut."""
    rng = random.Random(seed)
    bases = REAL + GENERATED
    checked = 0
    for _ in range(300):
        text = rng.choice(bases)
        for _ in range(rng.randint(1, 4)):
            where = rng.randrange(len(text) + 1)
            action = rng.random()
            if action < 0.6:
                text = text[:where] + rng.choice(MUTATIONS) + text[where:]
            elif action < 0.8:
                lines = text.split("\n")
                i = rng.randrange(len(lines))
                lines.insert(rng.randrange(len(lines) + 1), lines[i])
                text = "\n".join(lines)
            elif action < 0.9:
                lines = text.split("\n")
                i = rng.randrange(len(lines))
                lines[i] = " " * rng.randint(0, 4) + lines[i].lstrip(" ")
                text = "\n".join(lines)
            else:
                text = text[:where]
        expected, got = outcome(slow, text), outcome(safeyaml.load_data, text)
        assert same(expected, got), (text, expected, got)
        checked += 1
    assert checked == 300
