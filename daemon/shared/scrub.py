"""Every secret value specd resolved is cut out of everything specd writes or says: one registry, one scrub.

Secrets are references in specs (`${secret:NAME}`), but their values still reach places that get
written down: an upstream API that echoes the bearer token in its 401 body, a driver that prints the
connection URL in its error, a traceback that shows a header dict. Guarding each place by hand misses the
next one, so the boundary is generic instead: `daemon.shared.secrets.resolve_secret` registers each value
it returns (with the derived forms worth catching: URL-encoded, JSON-escaped, base64, the bare token of
a `Bearer …`/`Basic …` value, base64 of `user:pass`), and `scrub(text)` replaces every registered form
with `***`. `install()` hooks the logging record factory (so records of every logger, including
Prefect's and those whose handlers are added later, are scrubbed when created) and puts `ScrubFilter` on
the root logger and its handlers; the daemon and every child process it starts (table workers, training,
services, the schedule runner) call it. The journal, the status file, metric labels, `ApplyError` and
action results pass their text through `scrub` / `scrub_obj` as well.

Import-light (stdlib only): engines and the pure core may call it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4  # shorter values would mask ordinary words; such "secrets" cannot be kept out of text anyway
_SCHEMES = re.compile(r"^(?:bearer|basic|token|apikey|api-key|key)\s+", re.IGNORECASE)

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _forms(value: str) -> Iterable[str]:
    """The value and the encodings in which it tends to show up in text."""
    yield value
    yield quote(value, safe="")
    yield quote_plus(value)
    yield json.dumps(value)[1:-1]
    raw = value.encode()
    yield base64.b64encode(raw).decode()
    yield base64.urlsafe_b64encode(raw).decode()
    yield base64.b64encode(raw).decode().rstrip("=")
    bare = _SCHEMES.sub("", value)
    if bare != value:  # "Bearer abc…": the bare token leaks on its own too
        yield from _forms(bare)
    if ":" in value and not value.startswith(("http://", "https://")):  # user:pass → the Basic auth form
        yield base64.b64encode(raw).decode()


NAMES_ENV = "SPECD_SCRUB_SECRET_NAMES"  # names (never values) of resolved secrets, inherited by children


def register(value: str | None, name: str | None = None) -> None:
    """Remember a secret value (and its derived forms) for scrubbing. Idempotent; short values ignored.

    With `name`, the secret's *name* is also added to `$SPECD_SCRUB_SECRET_NAMES`, so every child
    process started afterwards re-reads the same secrets from its environment at `install()`."""
    if name:
        names = [n for n in os.environ.get(NAMES_ENV, "").split(",") if n]
        if name not in names:
            os.environ[NAMES_ENV] = ",".join([*names, name])
    if not isinstance(value, str):
        return
    value = value.strip()
    if len(value) < MIN_LENGTH:
        return
    new = {form for form in _forms(value) if len(form) >= MIN_LENGTH}
    global _pattern
    with _lock:
        if new <= _values:
            return
        _values.update(new)
        _pattern = None


def register_basic(user: str, password: str) -> None:
    """HTTP basic auth: the header carries base64 of `user:password`, never the password alone."""
    register(password)
    register(f"{user}:{password}")


def registered() -> int:
    return len(_values)


def clear() -> None:
    """Forget every value (tests only)."""
    global _pattern
    with _lock:
        _values.clear()
        _pattern = None


def _compiled() -> re.Pattern[str] | None:
    global _pattern
    with _lock:
        if _pattern is None and _values:
            # longest first, so a value is masked whole before any shorter form inside it
            _pattern = re.compile("|".join(re.escape(v) for v in sorted(_values, key=len, reverse=True)))
        return _pattern


def scrub(text: Any) -> Any:
    """`text` with every registered secret form replaced by `***` (non-strings returned unchanged)."""
    if not isinstance(text, str) or not text:
        return text
    pattern = _compiled()
    return pattern.sub(MASK, text) if pattern is not None else text


def scrub_obj(data: Any) -> Any:
    """`scrub` applied to every string (keys included) of nested dicts, lists and tuples."""
    if not _values:
        return data
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, dict):
        return {scrub_obj(k): scrub_obj(v) for k, v in data.items()}
    if isinstance(data, list):
        return [scrub_obj(v) for v in data]
    if isinstance(data, tuple):
        return tuple(scrub_obj(v) for v in data)
    return data


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Render the record's message and traceback now, scrubbed, so no formatter sees the raw values."""
    if not _values or getattr(record, "_specd_scrubbed", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep what there is
        message = str(record.msg)
    cleaned = scrub(message)
    if cleaned != message:  # only then flatten: formatters that read `args` (access logs) keep working
        record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    record._specd_scrubbed = True
    return record


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs secret values out of every record it sees (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


_installed = False
_FILTER = ScrubFilter()


def _register_inherited() -> None:
    """The secrets the parent process resolved, read again from this process's environment/secret dir."""
    directory = os.environ.get("SPECD_SECRETS_DIR")
    for name in filter(None, os.environ.get(NAMES_ENV, "").split(",")):
        value = os.environ.get(name)
        if value is None and directory:
            try:
                value = (Path(directory) / name).read_text()
            except (OSError, UnicodeDecodeError):
                value = None
        register(value)


def install() -> None:
    """Scrub every log record of this process: record factory + root logger filter + root handlers.
    Child processes call it first thing; it also registers the secrets their parent had resolved."""
    global _installed
    _register_inherited()
    root = logging.getLogger()
    if _FILTER not in root.filters:
        root.addFilter(_FILTER)
    for handler in root.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    previous = logging.getLogRecordFactory()
    if getattr(previous, "specd_scrubs", False):
        return  # ours is in place (a library that replaced it since gets wrapped again by the next install())

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub_record(previous(*args, **kwargs))

    factory.specd_scrubs = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
    _installed = True
