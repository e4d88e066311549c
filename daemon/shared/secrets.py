"""Secrets stay references in specs: `${secret:NAME}` (or the literal `secret:NAME`).

Specs, plans, logs and fingerprints only ever see the marker `secret:NAME`. The value is read at apply
time, by the adapter that needs it, from the environment or from a secret file
(`$SPECD_SECRETS_DIR/NAME`, the Docker/Kubernetes convention), through pydantic-settings.

Two guards keep credentials out of Git: a literal that looks like a credential is a spec error (a
secret-looking key such as `password:` or an `Authorization` header, a URL with `user:pass@` or an
`api_key=` query parameter, a well-known token format, a bare high-entropy bearer token), and
`${oc.env:VAR}` refuses to copy a credential into the config — judged by the variable's name *and* by its
resolved value, since `${oc.env:X}` with `X=ghp_…` is the same leak under an innocent name. Every value
`resolve_secret` returns is registered with `daemon.shared.scrub`, which cuts it out of logs, errors,
the journal, status files and metric labels.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from daemon.shared import scrub

SECRET_PREFIX = "secret:"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_KEY_NAMES = re.compile(
    r"(^|[_-])(password|passwd|pwd|secret|client_?secret|token|access_?token|refresh_?token|api[_-]?key|apikey|"
    r"access_?key|secret_?key|private_?key|credentials?|auth|authorization|proxy-authorization|x-api-key|"
    r"x-auth-token|cookie|session_?key|signing_?key)$",
    re.IGNORECASE,
)
_SECRET_VAR_NAMES = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
_URL_SECRET_PARAMS = (
    r"api[_-]?key|apikey|access[_-]?token|auth[_-]?token|token|secret|client[_-]?secret|password|passwd|pwd|"
    r"sig|signature|x-amz-signature|x-goog-signature"
)
_CREDENTIAL_SOURCES = [  # compiled on first use (_credential_values): ~3 ms of every command otherwise
    (r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b", "an AWS access key id"),
    (r"(?i)aws_secret_access_key\s*[=:]\s*[A-Za-z0-9/+=]{40}", "an AWS secret access key"),
    (r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----", "a private key"),
    (r"\bgh[pousr]_[A-Za-z0-9]{30,}", "a GitHub token"),
    (r"\bgithub_pat_[A-Za-z0-9_]{40,}", "a GitHub fine-grained token"),
    (r"\bglpat-[A-Za-z0-9_-]{16,}", "a GitLab token"),
    (r"\bxox[abposre]-[A-Za-z0-9-]{10,}", "a Slack token"),
    (r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+", "a Slack webhook URL"),
    (r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}", "a Stripe secret key"),
    (r"\bAIza[0-9A-Za-z_-]{35}\b", "a Google API key"),
    (r"\bya29\.[0-9A-Za-z_-]{20,}", "a Google OAuth token"),
    (r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{32,}", "an OpenAI/Anthropic API key"),
    (r"\bhf_[A-Za-z0-9]{30,}\b", "a Hugging Face token"),
    (r"\bnpm_[A-Za-z0-9]{36}\b", "an npm token"),
    (r"\bpypi-AgE[A-Za-z0-9_-]{50,}", "a PyPI token"),
    (r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b", "a SendGrid key"),
    (r"\bgl(?:sa|c)_[A-Za-z0-9_=+/-]{20,}", "a Grafana token"),
    (r"(?i)\bAccountKey=[A-Za-z0-9+/=]{40,}", "an Azure storage key"),
    (r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", "a JWT"),
    (r"[a-z][a-z0-9+.-]*://[^/\s:@${}]*:(?!\$\{|secret:)[^/\s@]+@", "a URL with an embedded password"),
    (rf"(?i)[?&;](?:{_URL_SECRET_PARAMS})=(?!\$\{{|secret:)[^&#\s]{{4,}}", "an API key in a URL query"),
    (r"(?i)\bbearer\s+(?!\$\{|secret:)[A-Za-z0-9._~+/=-]{16,}", "a bearer token"),
]


@lru_cache(maxsize=1)
def _credential_values() -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(source), what) for source, what in _CREDENTIAL_SOURCES]


_BASIC = re.compile(r"(?i)\bbasic\s+([A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"^(?:0x)?[0-9a-fA-F]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DIGEST = re.compile(r"^(?:sha(?:1|224|256|384|512)|md5|blake2b?)[:-][0-9a-fA-F]+$", re.I)
_TOKENISH = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


def credential_kind(value: str) -> str | None:
    """What a string looks like if it contains a credential (a known token format, a URL with a
    password or an API-key query parameter, a bearer token), else None."""
    for pattern, what in _credential_values():
        if pattern.search(value):
            return what
    for match in _BASIC.finditer(value):  # "Basic <base64 of user:pass>", not the word "basic"
        try:
            decoded = base64.b64decode(match.group(1) + "=" * (-len(match.group(1)) % 4), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            continue
        if ":" in decoded and decoded.isprintable():
            return "HTTP basic credentials"
    return None


def _entropy(text: str) -> float:
    counts: dict[str, int] = {}
    for char in text:
        counts[char] = counts.get(char, 0) + 1
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_like_secret_value(value: str) -> str | None:
    """`credential_kind`, plus a bare high-entropy token (≥ 20 characters of mixed letters and digits,
    ≥ 3.5 bits/char). Hex digests, git shas, UUIDs, paths and numbers are not tokens."""
    if not isinstance(value, str):
        return None
    found = credential_kind(value)
    if found:
        return found
    text = value.strip()
    if len(text) < 20 or not _TOKENISH.match(text) or text.startswith(("/", "./", "../", "~")):
        return None
    if _HEX.match(text) or _UUID.match(text) or _DIGEST.match(text) or text.replace(".", "").replace("-", "").isdigit():
        return None
    classes = sum(bool(re.search(p, text)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]"))
    if classes < 3 or not re.search(r"[0-9]", text):
        return None
    if text.count("/") > 1 or text.count(".") > 2:  # paths, hostnames, dotted versions
        return None
    return "a high-entropy token" if _entropy(text) >= 3.5 else None


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
    what = looks_like_secret_value(value)
    if what:  # judged by the value: an innocent name does not make a token safe to copy into the config
        raise ValueError(
            f"${{oc.env:{name}}} would copy a secret into the config (its value looks like {what}); "
            f"use ${{secret:{name}}} instead"
        )
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
    if not path and not _any_credential_literal(data):  # the common answer, without a generator per node
        return
    if isinstance(data, dict):
        for key, value in data.items():
            sub = path + (key,)
            if (
                isinstance(key, str)
                and SECRET_KEY_NAMES.search(key)
                and isinstance(value, str)
                and value
                and not is_secret_ref(value)
                and "${secret:" not in value
                and not _REF_INSIDE.search(value)
            ):
                yield sub, f"looks like a credential literal; use ${{secret:NAME}} and set NAME in the environment or {secret_dir_hint()}"
                continue
            yield from find_credential_literals(value, sub)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from find_credential_literals(value, path + (index,))
    elif isinstance(data, str):
        what = _literal_kind(data) if len(data) <= 512 else credential_kind(data)  # the memo stays small
        if what:
            yield path, f"contains what looks like {what}; secrets belong in the environment or a secret file"


def _any_credential_literal(data: Any) -> bool:
    """Whether `find_credential_literals(data)` yields anything: the same tests, iteratively, stopping
    at the first (a plan runs this over every spec, and nearly all of them have none)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if (
                    isinstance(key, str)
                    and _secret_key_name(key)
                    and isinstance(value, str)
                    and value
                    and not is_secret_ref(value)
                    and "${secret:" not in value
                    and not _REF_INSIDE.search(value)
                ):
                    return True
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and (_literal_kind(item) if len(item) <= 512 else credential_kind(item)):
            return True
    return False


@lru_cache(maxsize=8192)
def _secret_key_name(key: str) -> bool:
    return SECRET_KEY_NAMES.search(key) is not None


@lru_cache(maxsize=8192)
def _literal_kind(value: str) -> str | None:
    """`credential_kind` once per distinct text: a repository of 1,000 specs repeats the same few
    hundred literals (presets, SQL, paths) 15 times over, and each costs 15 regular expressions."""
    return credential_kind(value)


_REF_INSIDE = re.compile(r"(?:^|\s)secret:[A-Za-z_][A-Za-z0-9_]*$")


def secret_dir_hint() -> str:
    return "$SPECD_SECRETS_DIR/NAME"


class SecretNotFound(KeyError):
    """A `${secret:NAME}` with no value in the environment or the secrets directory."""


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
    value = settings.value.get_secret_value().strip()
    scrub.register(value, name)  # from now on this value is cut out of everything specd writes or logs
    return value


def register_referenced(data: Any) -> int:
    """Resolve and register every `secret:NAME` reference found in (nested) spec data, so the scrubber
    knows the values before any action runs, in whichever process it resolves them. Unset secrets are
    skipped (the action that needs one reports it). Returns how many were registered."""
    found = 0
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif is_secret_ref(item):
            try:
                resolve_secret(item)
                found += 1
            except (SecretNotFound, ValueError):
                continue
    return found
