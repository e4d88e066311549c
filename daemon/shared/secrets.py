"""Secrets stay references in specs: `${secret:NAME}` (or the literal `secret:NAME`).

Specs, plans, logs and fingerprints only ever see the marker `secret:NAME`. The value is read at apply
time, by the adapter that needs it, from the environment or from a secret file
(`$SPECD_SECRETS_DIR/NAME`, the Docker/Kubernetes convention), through pydantic-settings.

Two guards keep credentials out of Git: a literal that looks like a credential is a spec error, and
`${oc.env:VAR}` refuses variables whose names look secret (they would be copied into the config).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

SECRET_PREFIX = "secret:"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_KEY_NAMES = re.compile(
    r"(^|_)(password|passwd|pwd|secret|token|api_?key|apikey|access_?key|private_?key|credentials?|auth)$",
    re.IGNORECASE,
)
_SECRET_VAR_NAMES = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
_CREDENTIAL_VALUES = [
    (re.compile(r"AKIA[0-9A-Z]{16}"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), "a GitHub token"),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{16,}"), "a GitLab token"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"\bglsa_[A-Za-z0-9_]{20,}"), "a Grafana service-account token"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"), "a JWT"),
    (re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@${}]+:(?!\$\{)[^/\s@]+@"), "a URL with an embedded password"),
]


def is_secret_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SECRET_PREFIX) and bool(_NAME.match(value[7:]))


def secret_marker(name: str) -> str:
    """OmegaConf resolver for `${secret:NAME}`: keeps the reference, never the value."""
    if not _NAME.match(name or ""):
        raise ValueError(f"invalid secret name {name!r}")
    return SECRET_PREFIX + name


def guarded_env(name: str, default: Any = None) -> Any:
    """Replacement for `oc.env` that refuses to copy secret-looking variables into a config."""
    if _SECRET_VAR_NAMES.search(name):
        raise ValueError(
            f"${{oc.env:{name}}} would copy a secret into the config; use ${{secret:{name}}} instead"
        )
    value = _ENV_PINS[name] if name in _ENV_PINS else os.environ.get(name)
    ENV_READS[name] = value
    if value is None:
        if default is None:
            raise KeyError(f"environment variable {name!r} is not set and has no default")
        return default
    return value


# The environment rule: `${oc.env:VAR}` values are resolved once, by the daemon, and recorded with what it
# applied (daemon.runtime.operations.record_applied_env); `plan`/`status` from any other shell pin the
# same values (`pin_env`) so desired state never depends on the caller's environment.
ENV_READS: dict[str, str | None] = {}  # every oc.env variable read by compose in this process → its value
_ENV_PINS: dict[str, str | None] = {}


def pin_env(values: dict[str, str | None] | None) -> None:
    """Resolve these `${oc.env:...}` variables to these values (None: as if unset) instead of os.environ."""
    _ENV_PINS.clear()
    _ENV_PINS.update(values or {})


def find_credential_literals(data: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """Yield (key path, message) for every literal in raw spec data that looks like a credential."""
    if isinstance(data, dict):
        for key, value in data.items():
            sub = path + (key,)
            if (
                isinstance(key, str)
                and SECRET_KEY_NAMES.search(key)
                and isinstance(value, str)
                and value
                and not is_secret_ref(value)
                and not value.startswith("${secret:")
            ):
                yield sub, f"looks like a credential literal; use ${{secret:NAME}} and set NAME in the environment or {secret_dir_hint()}"
                continue
            yield from find_credential_literals(value, sub)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from find_credential_literals(value, path + (index,))
    elif isinstance(data, str):
        for pattern, what in _CREDENTIAL_VALUES:
            if pattern.search(data):
                yield path, f"contains what looks like {what}; secrets belong in the environment or a secret file"
                break


def secret_dir_hint() -> str:
    return "$SPECD_SECRETS_DIR/NAME"


class SecretNotFound(KeyError):
    pass


def resolve_secret(ref: str) -> str:
    """Read a secret's value (apply time only). Environment first, then the secrets directory."""
    from pydantic import Field, SecretStr, create_model
    from pydantic_settings import BaseSettings, SettingsConfigDict

    if not is_secret_ref(ref):
        raise ValueError(f"not a secret reference: {ref!r}")
    name = ref[len(SECRET_PREFIX):]
    secrets_dir = os.environ.get("SPECD_SECRETS_DIR")
    config = SettingsConfigDict(
        secrets_dir=secrets_dir if secrets_dir and os.path.isdir(secrets_dir) else None,
        case_sensitive=True,
        extra="ignore",
    )
    settings_class = create_model(
        "OneSecret",
        __base__=BaseSettings,
        __config__=None,
        value=(SecretStr | None, Field(default=None, validation_alias=name)),
    )
    settings_class.model_config = config
    settings = settings_class()
    if settings.value is None:
        raise SecretNotFound(f"secret {name} is not set (environment variable {name} or {secret_dir_hint()})")
    return settings.value.get_secret_value().strip()
