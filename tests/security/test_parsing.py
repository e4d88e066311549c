"""Family 4: bounded parsing. Every hostile file is answered within seconds by an error naming the file
(and line where there is one), the other errors of the commit are still reported, and a duplicate key
is an error instead of the last one silently winning."""

from __future__ import annotations

import os
import time

import pytest

from daemon.core import safeyaml
from tests.security.helpers import validate_errors

GOOD = "source:\n  type: file\n  path: specs/data/x.csv\n  format: csv\n"
BROKEN_ELSEWHERE = "source:\n  type: file\n  path: specs/data/x.csv\n  format: xls\n"  # a plain schema error in another file


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\ndescription: *a{levels - 1}\n"


def _nested_flow(depth: int) -> str:
    return "description: " + "[" * depth + "]" * depth + "\n"


def _nested_block(depth: int) -> str:
    return "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "x: 1\n"


CASES = [  # (name, content (str or bytes), expected (substring of the one error of the file))
    ("alias_bomb", _bomb(), "specs/tables/hostile.yaml:"),
    ("deep_flow", _nested_flow(10_000), "specs/tables/hostile.yaml:1: YAML syntax error: while increasing flow level"),  # libyaml's own limit
    ("deep_flow_100", _nested_flow(100), "specs/tables/hostile.yaml:1: nesting deeper than 64 levels"),
    ("deep_block", _nested_block(500), "specs/tables/hostile.yaml:65: nesting deeper than 64 levels"),
    ("many_keys", "description: x\nbig: {" + ", ".join(f"k{i}: 1" for i in range(15_000)) + "}\n",
     "specs/tables/hostile.yaml:2: more than 10,000 keys (aliases expanded)"),
    ("many_aliases", "a: &a 1\nlist: [" + ", ".join(["*a"] * 1_500) + "]\n", "specs/tables/hostile.yaml:2: more than 1,000 alias references"),
    ("recursive_alias", "a: &a [1, *a]\n", "specs/tables/hostile.yaml:1: YAML syntax error: alias 'a' refers to a node that contains it"),
    ("not_utf8", b"description: caf\xe9\n" + GOOD.encode(), "specs/tables/hostile.yaml:1: not UTF-8 text: byte 0xe9 at line 1, column 17"),
    ("two_documents", GOOD + "---\n" + GOOD, "specs/tables/hostile.yaml:5: YAML syntax error: a spec file holds one document"),
    ("python_tag", "description: !!python/object/apply:os.system ['id']\n" + GOOD,
     "specs/tables/hostile.yaml:1: YAML syntax error: could not determine a constructor for the tag"),
    ("huge_integer", "description: x\nretention: {vacuum_hours: " + "9" * 10_000 + "}\n" + GOOD, "specs/tables/hostile.yaml:"),
    ("unhashable_key", "? {a: 1}\n: x\n" + GOOD, "specs/tables/hostile.yaml:1: YAML syntax error: "),
    ("duplicate_key", "description: one\n" + GOOD + "description: two\n",
     "specs/tables/hostile.yaml:6: description: duplicate key 'description' (first at line 1)"),
    ("nested_duplicate", "source:\n  type: file\n  path: specs/data/x.csv\n  format: csv\n  path: /etc/passwd\n",
     "specs/tables/hostile.yaml:5: source.path: duplicate key 'path' (first at line 3)"),
]


@pytest.mark.parametrize(("name", "content", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hostile_yaml_is_a_quick_clear_error_and_other_errors_still_count(spec_repo, tmp_path, name, content, expected):
    spec_repo.write("specs/tables/other.yaml", BROKEN_ELSEWHERE)
    path = spec_repo.path / "specs/tables/hostile.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.monotonic()
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"{name} took {elapsed:.1f}s"
    mine = [e for e in errors if e.startswith("specs/tables/hostile.yaml")]
    assert len(mine) == 1 and mine[0].startswith(expected), errors
    assert any(e.startswith("specs/tables/other.yaml:4: source.format: Input should be") for e in errors), errors


def test_alias_bomb_names_the_limit(spec_repo, tmp_path):
    spec_repo.write("specs/tables/bomb.yaml", _bomb())
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert errors and "more than 50,000 nodes (aliases expanded): an alias bomb or an oversized file" in errors[0], errors


def test_oversized_file_is_refused_before_it_is_read(spec_repo, tmp_path):
    path = spec_repo.path / "specs/tables/huge.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # 50 MB (sparse: the size is what the guard looks at first)
        handle.truncate(50 * 1024 * 1024)
    started = time.monotonic()
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert time.monotonic() - started < 5
    assert errors == ["specs/tables/huge.yaml: file is 52,428,800 bytes; spec files are limited to 524,288 bytes"], errors


def test_two_and_a_half_million_keys_are_refused(spec_repo, tmp_path):
    path = spec_repo.path / "specs/tables/keys.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for i in range(2_500_000):
            handle.write(f"k{i}: 1\n")
    started = time.monotonic()
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert time.monotonic() - started < 5
    assert len(errors) == 1 and errors[0].startswith("specs/tables/keys.yaml: file is ") and "limited to 524,288 bytes" in errors[0]


def test_hostile_preset_is_reported_at_the_preset(spec_repo, tmp_path):
    spec_repo.write("specs/presets/bomb.yaml", _bomb())
    spec_repo.write("specs/tables/t.yaml", "defaults: [presets/bomb, _self_]\n" + GOOD)
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert len(errors) == 1 and errors[0].startswith("specs/presets/bomb.yaml:") and "more than 50,000 nodes" in errors[0], errors


def test_hostile_environment_overlay_is_reported(spec_repo, tmp_path):
    (spec_repo.path / "environments/dev.yaml").write_text(_bomb())
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert len(errors) == 1 and errors[0].startswith("environments/dev.yaml:") and "more than 50,000 nodes" in errors[0], errors


def test_duplicate_keys_are_all_listed(spec_repo, tmp_path):
    spec_repo.write("specs/tables/t.yaml", "layer: bronze\n" + GOOD + "layer: gold\nlayer: silver\n")
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert errors == [
        "specs/tables/t.yaml:6: layer: duplicate key 'layer' (first at line 1)",
        "specs/tables/t.yaml:7: layer: duplicate key 'layer' (first at line 1)",
    ], errors


def test_merge_keys_and_small_aliases_still_work():
    data, _ = safeyaml.load("base: &b {x: 1, y: 2}\nthing:\n  <<: *b\n  y: 3\nlist: [*b, *b]\n")
    assert data["thing"] == {"x": 1, "y": 3} and data["list"] == [{"x": 1, "y": 2}] * 2


def test_limits_are_what_the_readme_states():
    readme = (os.path.dirname(__file__) + "/../../README.md")
    text = open(readme, encoding="utf-8").read()
    for figure in (f"{safeyaml.MAX_FILE_BYTES // 1024} KiB", f"{safeyaml.MAX_DEPTH} levels",
                   f"{safeyaml.MAX_NODES:,} nodes", f"{safeyaml.MAX_KEYS:,} keys", f"{safeyaml.MAX_ALIASES:,} alias"):
        assert figure in text, figure


def _interpolation_bomb(levels: int = 8, relative: bool = False) -> str:
    lines = ["description: x", "a0: [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    ref = "..a" if relative else "spec.a"
    lines += [f"a{i}: [" + ", ".join([f'"${{{ref}{i - 1}}}"'] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


INTERPOLATION_CASES = [  # (text, expected start of the file's one error)
    (_interpolation_bomb(), "specs/tables/hostile.yaml:6: a4: interpolations at a4 expand to more than 50,000 nodes"),
    (_interpolation_bomb(relative=True), "specs/tables/hostile.yaml:6: a4: interpolations at a4 expand to more than 50,000 nodes"),
    ("description: \"${oc.decode:'[1, 2, 3]'}\"\n" + GOOD, "specs/tables/hostile.yaml:1: description: interpolation: "),
    ("description: \"${oc.create:'{a: 1}'}\"\n" + GOOD, "specs/tables/hostile.yaml:1: description: "),
    ("description: \"${oc.select:source.path,x}\"\n" + GOOD, "specs/tables/hostile.yaml:1: description: interpolation: "),
    ("description: \"${source.${x}}\"\nx: path\n" + GOOD, "specs/tables/hostile.yaml:1: description: nested interpolations"),
]


@pytest.mark.parametrize(("text", "expected"), INTERPOLATION_CASES, ids=["bomb", "relative-bomb", "oc.decode", "oc.create", "oc.select", "nested"])
def test_interpolation_bombs_and_decoding_resolvers_are_refused(spec_repo, tmp_path, text, expected):
    spec_repo.write("specs/tables/other.yaml", BROKEN_ELSEWHERE)
    (spec_repo.path / "specs/tables").mkdir(parents=True, exist_ok=True)
    (spec_repo.path / "specs/tables/hostile.yaml").write_text(text)
    started = time.monotonic()
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert time.monotonic() - started < 5
    mine = [e for e in errors if e.startswith("specs/tables/hostile.yaml")]
    assert len(mine) == 1 and mine[0].startswith(expected), errors
    if "decode" in text or "create" in text or "select" in text:
        assert "not allowed in specs" in mine[0], mine
    assert any(e.startswith("specs/tables/other.yaml:4: source.format:") for e in errors), errors


def test_plain_references_still_resolve(spec_repo, tmp_path):
    spec_repo.write("specs/tables/t.yaml", "description: \"${spec.source.path} in ${env.name}\"\n" + GOOD)
    from daemon.core.compose import compose

    doc = next(d for d in compose(spec_repo.path, "dev").docs if d.name == "t")
    assert doc.spec.description == "specs/data/x.csv in dev"
