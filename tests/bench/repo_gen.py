"""Generate a git repository of N table specs (a bronze file per 10 tables, the rest SQL over them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def generate(path: Path, tables: int, rows: int = 20) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "environments", path / "environments", dirs_exist_ok=True)
    (path / "data").mkdir(exist_ok=True)
    (path / "data" / "events.csv").write_text("id,value\n" + "".join(f"{i},{i * 0.5}\n" for i in range(rows)))
    specs = path / "specs" / "tables"
    specs.mkdir(parents=True, exist_ok=True)
    for i in range(tables):
        if i % 10 == 0:
            text = f"# bronze {i}\nlayer: bronze\nsource:\n  type: file\n  path: data/events.csv\n  format: csv\n"
        else:
            upstream = f"t{i - i % 10:04d}"
            text = (
                f"layer: silver\ndescription: derived table {i}\nsource:\n  type: table\n  inputs: [{upstream}]\n"
                f"  sql: SELECT id, value * {i} AS value FROM {upstream}\nwrite:\n  mode: merge\n  keys: [id]\n"
            )
        (specs / f"t{i:04d}.yaml").write_text(text)
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.invalid", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.invalid", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "generated"], cwd=path, check=True, env=env)
    return path
