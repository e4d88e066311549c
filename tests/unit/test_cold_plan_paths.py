"""The cold `specd plan` shortcuts answer exactly what the code they stand in for answers.

Each shortcut (issue 14, cold plan) replaces a slower spelling of the same computation; these tests
compare the two on random and hand-picked inputs, so a later edit of either side that makes them
differ fails here rather than changing a plan, a fingerprint or a security verdict.
"""

from __future__ import annotations

import json
import math
import random
import re

from daemon.core.graph import canonical_json
from daemon.schema import promql
from daemon.shared import secrets

_OLD_MATCHER = re.compile(r'(!?=)"(?:[^"\\]|\\.)*"')


def test_matcher_substitution_matches_the_group_spelling_on_random_text():
    alphabet = ['=', '!', '"', '\\', 'a', '~', '{', '}', ',', ' ', '="', '!="', '\\"', 'x"y']
    rng = random.Random(14)
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert promql._EXACT_MATCHER_VALUE.sub('"_"', text) == _OLD_MATCHER.sub(r'\1"_"', text), text


def test_matcher_substitution_keeps_shapes_and_errors():
    query = 'sum(rate(x{table="a\\"b", job!="j", c=~"r.*"}[5m])) or (sum(y{table="a"}) * 0)'
    assert promql._EXACT_MATCHER_VALUE.sub('"_"', query) == 'sum(rate(x{table="_", job!="_", c=~"r.*"}[5m])) or (sum(y{table="_"}) * 0)'
    assert promql.check_instant_query(f" {query} ") == query
    try:
        promql.check_instant_query('x{table="t"}[5m]')
    except promql.PromQLError as exc:
        assert str(exc) == "invalid PromQL 'x{table=\"t\"}[5m]': a range vector; wrap it in a function such as rate() or max_over_time()"
    else:
        raise AssertionError("a range vector was accepted")


def test_canonical_json_is_json_dumps_with_its_options():
    values = [{"b": 1, "a": [1, 2.5, None, True, "é\u2028\x00"], "c": {"z": math.nan, "y": -math.inf}}, "x", 3, None,
              {2: 1, 1: 2}, {"k": object}, [{"b": {}}], {"s": {1, 2}.__class__}]
    for value in values:
        assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _random_data(rng: random.Random, depth: int = 0):
    keys = ["name", "password", "api_key", "token", "desc", "x-api-key", "auth", "value", 3]
    strings = ["", "plain", "${secret:DB}", "secret:DB_PASS", "hunter2", "key AKIAABCDEFGHIJKLMNOP", "${env.name}",
               "a ${secret:X} b", "ghp_" + "a" * 36]
    roll = rng.random()
    if depth < 4 and roll < 0.3:
        return {rng.choice(keys): _random_data(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 4 and roll < 0.45:
        return [_random_data(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.85:
        return rng.choice(strings)
    return rng.choice([1, 2.5, True, None])


def _generator_only(data):
    """The walk of find_credential_literals without its shortcut (taken only at the top: path empty)."""
    return list(secrets.find_credential_literals({"_": data}, ("_root",)))


def test_credential_shortcut_agrees_with_the_full_walk():
    rng = random.Random(7)
    found = 0
    for _ in range(3_000):
        data = _random_data(rng)
        full = [(path[2:], message) for path, message in _generator_only(data)]  # drop ("_root", "_")
        assert secrets._any_credential_literal(data) == bool(full), data
        assert list(secrets.find_credential_literals(data)) == full, data
        found += bool(full)
    assert 300 < found < 2_900  # both answers were exercised


def test_function_lists_from_one_catalogue_scan_equal_the_separate_queries():
    import duckdb

    from flows.tables import sql_guard

    connection = duckdb.connect(":memory:")
    try:
        scalar = connection.execute(
            "SELECT DISTINCT function_name, function_type, coalesce(macro_definition, '') FROM duckdb_functions() "
            "WHERE function_type IN ('scalar', 'aggregate', 'window', 'macro')").fetchall()
        table = connection.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type IN ('table', 'table_macro', 'pragma')").fetchall()
    finally:
        connection.close()
    denied = {n.lower() for n, kind, body in scalar if sql_guard._DENIED.search(n) or (kind == "macro" and sql_guard._MACRO_BODY_DENIED.search(body))}
    assert sql_guard.allowed_functions() == frozenset(n.lower() for n, _, _ in scalar) - denied
    assert sql_guard.denied_table_functions() == frozenset(n.lower() for (n,) in table) - sql_guard.SAFE_TABLE_FUNCTIONS
    assert "read_csv_auto" in sql_guard.denied_table_functions() and "getenv" not in sql_guard.allowed_functions()


def test_generated_dashboards_validate_back_from_their_data(tmp_path):
    """What lets the compose cache store a generated dashboard as its data alone (`Deferred.rebuilt_from`):
    its class validates that data into an equal model, field types included, for every kind's generator."""
    import pickle

    from daemon.core.compose_cache import ComposeCache
    from daemon.core.deferred import Deferred
    from daemon.runtime.reconcile import load_desired
    from daemon.schema.dashboard import DashboardSpec
    from tests.bench.repo_gen import generate

    repo = generate(tmp_path / "repo", 60)
    cache = ComposeCache(tmp_path / "compose-dev.bin")
    load_desired(repo, "dev", "test", (), cache)
    cache.save()
    stored = ComposeCache(tmp_path / "compose-dev.bin").memos["derive:dashboard"]
    assert stored.keys() == cache.memos["derive:dashboard"].keys()
    for key, (kept, data) in stored.items():  # the file holds each dashboard's data once, no pickle of it
        assert type(kept) is Deferred and kept.blob == b"" and kept.rebuild[1] is data
        assert kept.load() == cache.memos["derive:dashboard"][key][0]
    memo = cache.memos["derive:dashboard"]
    kinds = set()
    for spec, data in memo.values():
        again = pickle.loads(pickle.dumps(Deferred.rebuilt_from(spec, data))).load()
        assert type(again) is DashboardSpec and again == spec and repr(again) == repr(spec)
        assert again.model_dump(mode="json", by_alias=True) == data
        kinds.add(str(spec.generated_for).split("/")[0])
    assert len(memo) > 60 and len(kinds) >= 3, kinds
