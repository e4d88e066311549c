"""Generate a git repository of N specs written the way the README recommends, like `specs/` itself.

Why realistic: a generator of bare, preset-free files measured a path no user takes (the compose cache
skipped every file with a `defaults:` list, and the plan looked 27× faster than it was). So each block
of 50 specs here mixes kinds like the examples: bronze file tables, silver tables that clean, dedupe and
check quality, gold feature and aggregate tables (one with a declared schema), a model on that gold
table with A/B candidates and a service in front of it. Every table uses a preset of `specs/presets/`
through a `defaults:` list with `_self_`, and interpolates the environment (`${env.name}`); the models
use a generated model preset. `--plain` keeps the old bare generator as a baseline.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 50  # specs per block: 44 tables, 3 models, 3 services
MODEL_PRESET = "# Shared training settings of the generated models.\nsplit:\n  holdout: 0.25\n  seed: 7\noptim:\n  name: adamw\n  lr: 0.01\ntrainer:\n  epochs: 5\n  batch_size: 64\n"


def _bronze(i: int) -> str:
    return (
        f"# Raw events of shop {i} ({'messy' if i % 3 else 'clean'} export).\n"
        "defaults:\n  - presets/table_bronze\n  - _self_\n"
        f"description: Events of shop {i} as received in ${{env.name}}\n"
        "source:\n  type: file\n  path: data/events.csv\n  format: csv\n  options:\n    all_varchar: true\n"
    )


def _silver(i: int, upstream: str) -> str:
    return (
        f"# Clean events of shop {i}: typed, deduplicated, bad rows quarantined.\n"
        "defaults:\n  - presets/table_silver\n  - _self_\n"
        f"description: Typed events of shop {i} (${{env.name}}), failing rows quarantined\n"
        f"source:\n  type: table\n  inputs: [{upstream}]\n"
        "clean:\n  columns:\n"
        "    id: {cast: int64, nulls: drop}\n"
        "    value: {cast: float64, on_cast_error: quarantine}\n"
        "    status: {normalize: {trim: true, case: lower, empty_as_null: true}, nulls: {strategy: constant, value: unknown}}\n"
        "  dedupe:\n    keys: [id]\n"
        "quality:\n  columns:\n"
        f"    value: {{not_null: true, min: {-(i % 7)}}}\n"
        "    status: {allowed: [paid, shipped, refunded, unknown]}\n"
        "write:\n  mode: merge\n  keys: [id]\n"
    )


def _gold(i: int, upstream: str, schema: bool) -> str:
    text = (
        f"# Features of shop {i} for models and dashboards.\n"
        "defaults:\n  - presets/table_gold\n  - _self_\n"
        f"description: Features of shop {i} in ${{env.name}}\n"
        f"source:\n  type: table\n  inputs: [{upstream}]\n"
    )
    if schema:
        return text + (
            "clean:\n  where: value IS NOT NULL\n"
            f"features:\n  columns:\n    is_big: \"CAST(value > {i % 5} AS BIGINT)\"\n    scaled: value * {i % 11 + 1}\n"
            "  select: [id, value, scaled, status, is_big]\n"
            "schema:\n  columns:\n"
            "    - {name: id, type: int64}\n    - {name: value, type: float64}\n    - {name: scaled, type: float64}\n"
            "    - {name: status, type: string}\n    - {name: is_big, type: int64}\n"
        )
    return text + (
        f"features:\n  columns:\n    bucket: CAST(id % {i % 9 + 2} AS BIGINT)\n"
        "  aggregate:\n    by: [bucket, status]\n    aggregates:\n      events: count(*)\n      total: round(sum(value), 2)\n"
        "partition_by: [bucket]\n"
    )


def _model(i: int, table: str) -> str:
    return (
        f"# Predict whether an event of {table} is big (generated, like specs/models/penguin_sex.yaml).\n"
        "defaults:\n  - presets/model_defaults\n  - _self_\n"
        f"description: Big events of {table} in ${{env.name}}\n"
        f"data:\n  table: {table}\n  target: is_big\n  exclude: [id, scaled]\n"
        "task: binary\n"
        "preprocessing:\n  numeric: {impute: median, scale: standard}\n  categorical: {impute: most_frequent, encode: onehot}\n"
        f"model:\n  _target_: flows.training.models.TabularMLP\n  hidden: [{16 + i % 16}, 8]\n"
        "candidates:\n  a: []\n  b: [\"model.hidden=[64,32]\", optim.lr=0.003]\n"
        "  logistic: [\"model={_target_: flows.training.models.LogisticBaseline}\"]\n"
        "promotion:\n  metric: roc_auc\n  min_improvement: 0.005\n  guardrails:\n    - {metric: accuracy, min: 0.6}\n"
    )


def _service(model: str, port: int) -> str:
    return (
        f"# {model} as an HTTP API: 90 % champion, 10 % challenger.\n"
        f"description: Serves {model} (A/B champion vs challenger)\n"
        f"model: {model}\nport: {port}\n"
        "variants:\n  - {name: champion, role: champion, weight: 90}\n  - {name: challenger, role: challenger, weight: 10}\n"
        "routing:\n  sticky_field: user_id\n"
        "batching:\n  enabled: true\n  max_batch_size: 64\n  max_latency_ms: 50\n"
        "slo:\n  latency_p99_ms: 100\n  error_rate: 0.01\n"
    )


def _plain(i: int) -> str:
    if i % 10 == 0:
        return f"# bronze {i}\nlayer: bronze\nsource:\n  type: file\n  path: data/events.csv\n  format: csv\n"
    upstream = f"t{i - i % 10:05d}"
    return (
        f"layer: silver\ndescription: derived table {i}\nsource:\n  type: table\n  inputs: [{upstream}]\n"
        f"  sql: SELECT id, value * {i} AS value FROM {upstream}\nwrite:\n  mode: merge\n  keys: [id]\n"
    )


def layout(specs: int) -> dict[str, str]:
    """{path under specs/: text} for `specs` realistic specs (tables, models and services mixed)."""
    files: dict[str, str] = {}
    for i in range(specs):
        block, j = divmod(i, BLOCK)
        name = f"t{i:05d}"
        if j in (47, 48, 49):  # 3 models on the block's gold tables with a declared schema ...
            files[f"models/m{i:05d}.yaml"] = _model(i, f"t{block * BLOCK + (38, 39, 28)[j - 47]:05d}")
            continue
        if j in (44, 45, 46):  # ... and 3 services in front of them
            files[f"services/s{i:05d}.yaml"] = _service(f"m{i + 3:05d}", 20000 + i)
            continue
        group = i - j % 10
        if j % 10 == 0:
            files[f"tables/{name}.yaml"] = _bronze(i)
        elif j % 10 <= 5:
            files[f"tables/{name}.yaml"] = _silver(i, f"t{group:05d}")
        else:
            files[f"tables/{name}.yaml"] = _gold(i, f"t{group + 1 + j % 5:05d}", schema=j % 10 >= 8)
    # a service is only written with its model: drop the ones of a cut-off last block
    for path in [p for p in files if p.startswith("services/")]:
        model = files[path].split("model: ", 1)[1].split("\n", 1)[0]
        if f"models/{model}.yaml" not in files:
            del files[path]
    return files


def generate(path: Path, specs: int, rows: int = 20, plain: bool = False) -> Path:
    """A committed git repository at `path` with `specs` spec files (see the module docstring)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "environments", path / "environments", dirs_exist_ok=True)
    (path / "data").mkdir(exist_ok=True)
    (path / "data" / "events.csv").write_text(
        "id,value,status\n" + "".join(f"{i},{i * 0.5},{('paid', 'shipped', ' Refunded', '')[i % 4]}\n" for i in range(rows))
    )
    specs_dir = path / "specs"
    if plain:
        files = {f"tables/t{i:05d}.yaml": _plain(i) for i in range(specs)}
    else:
        files = layout(specs)
        shutil.copytree(ROOT / "specs" / "presets", specs_dir / "presets", dirs_exist_ok=True)
        (specs_dir / "presets" / "model_defaults.yaml").write_text(MODEL_PRESET)
    for rel, text in files.items():
        target = specs_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.invalid", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.invalid", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "generated"], cwd=path, check=True, env=env)
    return path
