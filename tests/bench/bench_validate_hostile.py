"""What the hostile-spec guards cost: `specd validate` of the example repo with every guard on, against
the same validate with the guards patched out (plain C YAML load, no symlink walk, no SQL allowlist,
no `_target_`/path/column checks) measured in the same run; plus how fast hostile files are refused.

    python tests/bench/bench_validate_hostile.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _validate(repo: Path, home: Path) -> list[str]:
    from daemon.runtime.reconcile import check, context_for, load_desired, make_adapters
    from daemon.shared.errors import SpecErrors

    try:
        desired = load_desired(repo, "dev", "bench")
        check(make_adapters(context_for(desired, home)), desired.graph)
    except SpecErrors as exc:
        return [str(i) for i in exc.issues]
    return []


@contextlib.contextmanager
def guards_off() -> Iterator[None]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with contextlib.ExitStack() as stack:
        for target, value in [
            ("daemon.core.compose.tree_issues", lambda root, roots: ([], set())),
            ("daemon.core.compose.load_data", lambda text: yaml.load(text, Loader=loader)),
            ("daemon.core.compose.read_text", lambda path: Path(path).read_text(encoding="utf-8")),
            ("flows.tables.sql_guard.check_select", lambda sql, tables: None),
            ("flows.tables.sql_guard.tree_problems", lambda parsed, tables: []),
            ("daemon.adapters.tables.guards.source_problems", lambda spec, root, prefixes: []),
            ("daemon.adapters.tables.schema_check.column_problems", lambda resources, adapter: {}),
        ]:
            stack.enter_context(mock.patch(target, value))
        yield


def timings(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm: imports, DuckDB function lists
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def _fmt(values: list[float]) -> str:
    return f"min {min(values) * 1000:7.1f}  median {statistics.median(values) * 1000:7.1f}  max {max(values) * 1000:7.1f} ms"


def _hostile(repo: Path) -> dict[str, Callable[[Path], None]]:
    bomb = "\n".join(['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
                     + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]) + "\ndescription: *a8\n"

    def write(text: str | bytes) -> Callable[[Path], None]:
        return lambda path: path.write_bytes(text if isinstance(text, bytes) else text.encode())

    def huge(path: Path) -> None:
        with open(path, "wb") as handle:
            handle.truncate(50 * 1024 * 1024)

    return {
        "alias bomb (9^9 expanded nodes)": write(bomb),
        "50 MB file": huge,
        "10,000-level nesting": write("description: " + "[" * 10_000 + "]" * 10_000 + "\n"),
        "15,000 keys": write("big: {" + ", ".join(f"k{i}: 1" for i in range(15_000)) + "}\n"),
        "non-UTF-8 bytes": write(b"description: caf\xe9\n"),
        "SQL reading /etc/passwd": write("source:\n  type: table\n  inputs: [bronze_orders]\n  sql: SELECT * FROM read_csv('/etc/passwd')\n"),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hostile", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    repeat = max(3, args.repeat)
    work = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    try:
        repo = work / "repo"
        shutil.copytree(ROOT / "specs", repo / "specs")
        shutil.copytree(ROOT / "environments", repo / "environments")
        home = work / "home"
        assert _validate(repo, home) == [], "the example repo must validate"
        with guards_off():
            assert _validate(repo, home) == []
            baseline = timings(lambda: _validate(repo, home), repeat)
        guarded = timings(lambda: _validate(repo, home), repeat)
        ratio = statistics.median(guarded) / statistics.median(baseline)
        print(f"validate of the example repo ({len(list((repo / 'specs').rglob('*.yaml')))} spec files), {repeat} runs each")
        print(f"  baseline, guards patched out: {_fmt(baseline)}")
        print(f"  with every guard:             {_fmt(guarded)}")
        print(f"  ratio guarded/baseline = {ratio:.2f}x (median)")
        figures = {"baseline_s": statistics.median(baseline), "guarded_s": statistics.median(guarded), "ratio": ratio}
        if args.hostile:
            print("hostile file added to the example repo → validate answers (one error for the file, others still checked)")
            for name, make in _hostile(repo).items():
                path = repo / "specs" / "tables" / "hostile.yaml"
                make(path)
                runs = timings(lambda: _validate(repo, home), 3)
                mine = [e for e in _validate(repo, home) if e.startswith("specs/tables/hostile.yaml")]
                assert mine, name
                print(f"  {name:34s} {_fmt(runs)}  ratio/baseline = {statistics.median(runs) / statistics.median(baseline):.2f}x  → {mine[0][:90]}")
                figures[f"hostile:{name}"] = statistics.median(runs)
                path.unlink()
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
