"""Pause the cyclic garbage collector while the CLI imports itself; `restore()` at the end of main.py.

Why: importing the CLI creates ~10⁵ long-lived objects (pydantic model classes, their fields, the
schema modules), none of them garbage, and CPython collects every 700 new containers — walking them
again and again: ~40 ms of the ~0.25 s import, on every `specd` command. Imported first by main.py
(import side effect by design); main.py restores the collector's state as its last statement, so an
importer (a test, the daemon) gets the collector back as it was. The collector is tuned per command
afterwards (main._tune_gc).
"""

from __future__ import annotations

import gc

_was_enabled = gc.isenabled()
gc.disable()


def restore() -> None:
    if _was_enabled:
        gc.enable()
