"""Process-level setup of a service worker: die with the arbiter, resolve the log's storage options."""

from __future__ import annotations

import os


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
