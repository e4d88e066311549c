"""A model store every server can reach: trained models and their releases exported to object storage.

The BentoML store is a directory on one machine. With `storage.models_uri` set (`s3://bucket/models`, the
lake's storage_options), each release is published there after training — every model it names as a
BentoML `.bentomodel` archive (`bentoml.models.export_model`: model.yaml with the `specd.*` labels and
metrics, weights, config, the promotion decisions), then the release JSON itself (data lineage, git sha,
decision). A daemon or serving host whose local store lacks a release or a model imports them
(`bentoml.models.import_model`) instead of training again.

Order makes it crash-safe: archives first, the release last, so a release visible in the shared store
always has its archives; an import lands in the local store whole (BentoML imports into a temporary
directory and moves it), and `artifact_complete` (weights digest against config) is checked after it.

On a work pool without a shared disk (`training.work_pool` with `models_uri`), each worker trains into
its own store (`$SPECD_WORKER_DIR/bentoml`) and exports the candidate's model (`export`); the daemon
imports it (`ensure`) before it scores, promotes and serves, and publishes the release as usual.

BentoML exports to URLs through fsspec, which would need s3fs (and aiobotocore) only for this; the
archive goes through a local temporary file and `daemon.shared.storage_uri` instead, the one S3 client
and the one place its options (endpoint, credentials, TLS) are read.

Layout: `<models_uri>/<model>/models/<version>.bentomodel`, `<models_uri>/<model>/releases/<fingerprint>.json`.
The work runs as `python -m flows.training.shared_store` (request JSON on stdin, result JSON on stdout)
so the daemon never imports bentoml; `run` starts it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from daemon.shared import storage_uri

CODE_ROOT = str(Path(__file__).resolve().parents[2])
TIMEOUT_S = 900


def archive_uri(models_uri: str, tag: str) -> str:
    name, _, version = tag.partition(":")
    return storage_uri.join(models_uri, name, "models", f"{version}.bentomodel")


def release_uri(models_uri: str, model: str, fingerprint: str) -> str:
    return storage_uri.join(models_uri, model, "releases", f"{fingerprint}.json")


def _tags(release: dict[str, Any]) -> list[str]:
    return [t for t in (release.get("champion"), *(release.get("challengers") or ())) if t]


def _store(root: str) -> Any:
    from bentoml._internal.models.model import ModelStore

    return ModelStore(str(Path(root) / "models"))


def publish(release: dict[str, Any], models_uri: str, options: dict[str, str] | None, root: str) -> dict[str, Any]:
    """Export the release's models that the shared store lacks, then the release. Idempotent."""
    uploaded = export(_tags(release), models_uri, options, root)["uploaded"]
    body = json.dumps(release, indent=2, sort_keys=True).encode()
    storage_uri.write_bytes(release_uri(models_uri, release["model"], release["fingerprint"]), body, options)
    return {"uploaded": uploaded}


def export(tags: list[str], models_uri: str, options: dict[str, str] | None, root: str) -> dict[str, Any]:
    """Upload each model of `tags` the shared store lacks (a work-pool worker after training: the daemon,
    on another machine, imports it from there). One PUT per archive: it appears whole or not at all."""
    import bentoml

    from flows.training.artifact import artifact_complete

    uploaded = []
    for tag in tags:
        target = archive_uri(models_uri, tag)
        if storage_uri.exists(target, options):
            continue
        if not artifact_complete(tag, root):
            raise FileNotFoundError(f"model {tag} is missing or incomplete in the local store {root}")
        with tempfile.TemporaryDirectory(prefix="specd-export-") as scratch:
            local = bentoml.models.export_model(tag, str(Path(scratch) / "model.bentomodel"), _model_store=_store(root))
            storage_uri.upload(local, target, options)
        uploaded.append(tag)
    return {"uploaded": uploaded}


def ensure(tags: list[str], models_uri: str, options: dict[str, str] | None, root: str) -> dict[str, Any]:
    """Import from the shared store each model of `tags` the local store lacks (or holds incomplete)."""
    import shutil

    import bentoml

    from flows.training.artifact import artifact_complete, model_dir

    imported, missing = [], []
    for tag in tags:
        if artifact_complete(tag, root):
            continue
        source = archive_uri(models_uri, tag)
        with tempfile.TemporaryDirectory(prefix="specd-import-") as scratch:
            local = Path(scratch) / "model.bentomodel"
            try:
                storage_uri.download(source, local, options)
            except FileNotFoundError:
                missing.append(tag)
                continue
            shutil.rmtree(model_dir(tag, root), ignore_errors=True)  # an incomplete copy left by a crash
            bentoml.models.import_model(str(local), _model_store=_store(root))
        if not artifact_complete(tag, root):
            raise ValueError(f"model {tag} imported from {source} is incomplete (weights digest mismatch)")
        imported.append(tag)
    return {"imported": imported, "missing": missing}


def fetch(model: str, fingerprint: str, models_uri: str, options: dict[str, str] | None, root: str) -> dict[str, Any]:
    """The release of (model, fingerprint) from the shared store with its models, into the local store
    (the release written last, not made current). {"release": None} when the shared store has none."""
    from flows.training import registry

    try:
        data = json.loads(storage_uri.read_bytes(release_uri(models_uri, model, fingerprint), options))
    except FileNotFoundError:
        return {"release": None}
    done = ensure(_tags(data), models_uri, options, root)
    if done["missing"]:
        return {"release": None, "missing": done["missing"]}
    registry.write_release(registry.Release.from_json(data), root, make_current=False)
    return {"release": data, **done}


def main() -> int:
    request = json.loads(sys.stdin.read())
    op, root, models_uri, options = request["op"], request["root"], request["models_uri"], request.get("options") or None
    if op == "publish":
        result = publish(request["release"], models_uri, options, root)
    elif op == "export":
        result = export(list(request["tags"]), models_uri, options, root)
    elif op == "ensure":
        result = ensure(list(request["tags"]), models_uri, options, root)
    elif op == "fetch":
        result = fetch(request["model"], request["fingerprint"], models_uri, options, root)
    else:
        raise SystemExit(f"unknown operation {op!r}")
    print(json.dumps(result))
    return 0


def run(op: str, root: str, models_uri: str, options: dict[str, str] | None, **fields: Any) -> dict[str, Any]:
    """Run one operation in its own process (bentoml stays out of the caller); RuntimeError with the
    last line of its error output when it fails (credentials are scrubbed from it by the caller's logs)."""
    request = {"op": op, "root": root, "models_uri": models_uri, "options": options or {}, **fields}
    env = {**os.environ, "BENTOML_HOME": root, "BENTOML_DO_NOT_TRACK": "True"}
    env["PYTHONPATH"] = CODE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    done = subprocess.run([sys.executable, "-m", "flows.training.shared_store"], input=json.dumps(request), capture_output=True,
                          text=True, cwd=CODE_ROOT, env=env, timeout=TIMEOUT_S)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(f"shared model store {op} failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    raise SystemExit(main())
