"""Process-level setup of a service worker: die with the arbiter, resolve the log's storage options, and
find the models (a containerized bento carries its own)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def die_with_arbiter() -> None:
    """Workers run in sessions of their own: ask Linux to SIGTERM this worker when its arbiter dies, so a
    SIGKILLed `bentoml serve` leaves no worker holding the port (the supervisor also sweeps)."""
    import ctypes
    import signal
    import sys

    from daemon.shared import scrub

    scrub.install()  # every service worker: no secret value in its logs
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the arbiter died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def storage_options(settings: dict) -> dict[str, str]:
    """The prediction log's client options from the routing's `prediction_log` settings: references
    resolved in the worker, the environment's CA and `tls.required` applied (daemon.shared.storage_uri)."""
    from daemon.shared.storage_uri import log_options

    return log_options(settings, os.environ.get("SPECD_HOME") or None) or {}


def bento_model_root(environ: Mapping[str, str] = os.environ) -> str | None:
    """Inside an image built from the bento (`bentoml containerize`), the models travel in the bento
    itself ($BENTO_PATH/models), not in the $BENTOML_HOME store a `bentoml serve` beside the daemon uses.
    None (the $BENTOML_HOME store) everywhere else."""
    bento = environ.get("BENTO_PATH")
    if environ.get("BENTOML_CONTAINERIZED") == "true" and bento and Path(bento, "models").is_dir():
        return bento
    return None


def model_loader(environ: Mapping[str, str] = os.environ) -> Callable[[str], Any]:
    """`load_predictor` bound to where this worker's models are (`bento_model_root`): every service of
    specd loads its models through this, so a containerized bento never looks in $BENTOML_HOME."""
    from flows.training.artifact import load_predictor

    root = bento_model_root(environ)
    return load_predictor if root is None else (lambda tag: load_predictor(tag, root))


def server_stack() -> dict[str, str]:
    """The event loop this worker runs on and the HTTP parser uvicorn's "auto" setting (BentoML's worker
    sets neither) picks in it: uvloop + httptools when installed (pyproject.toml), else asyncio + h11,
    pure Python, with 20-35 % more CPU per request (bench_services.py). Shown in the A/B service's /status."""
    import asyncio
    import importlib.util

    try:
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    except RuntimeError:
        loop = "none"
    return {"loop": loop, "http": "httptools" if importlib.util.find_spec("httptools") else "h11"}
