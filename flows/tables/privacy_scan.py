"""Privacy by default at build time: a sample of each undeclared string column's values is classified.

Validation judges columns by name; here the values decide (flows.tables.pii_detect.sample_kind: e-mail,
phone, Luhn-valid card numbers, mod-97-valid IBANs, national ids, IP addresses). The first batch of a
build is sampled before privacy runs, so an undeclared column that holds personal data is caught even
when its name says nothing. Outcome: a warning in the build result (status message and the commit's
`specd.privacy_warnings`), or a failed build — nothing written — under `privacy.require_declared`.
Also: `key_ids`, the key identities recorded in every commit of a table that hashes or encrypts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

SAMPLE_ROWS = 200


def undeclared(batch: Any, privacy: Any) -> list[str]:
    """'column (kind)' for each string column of the batch that holds personal-looking values undeclared."""
    import pyarrow as pa

    from flows.tables.pii_detect import sample_kind

    declared = {c.lower() for c in (privacy.columns if privacy is not None else {})}
    found = []
    head = batch.slice(0, SAMPLE_ROWS)
    for field in head.schema:
        if field.name.lower() in declared or field.name.startswith("_specd"):
            continue
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        kind = sample_kind(head.column(field.name).to_pylist())
        if kind:
            found.append(f"{field.name} ({kind})")
    return found


def key_id(ref: str, key: bytes) -> str:
    """`NAME:fingerprint`: the secret's name and 12 hex of a hash of the key — never the key."""
    return f"{ref.removeprefix('secret:')}:{hashlib.sha256(b'specd-key-id' + key).hexdigest()[:12]}"


def key_ids(privacy: Any, resolve: Callable[[str], str]) -> dict[str, str]:
    """{column: key id} for every hashed or encrypted column (empty without privacy)."""
    if privacy is None:
        return {}
    out = {}
    for column, rule in privacy.columns.items():
        ref = getattr(rule, "key", None)
        if ref:
            out[column] = key_id(ref, resolve(ref).encode())
    return out
