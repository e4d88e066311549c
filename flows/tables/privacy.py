"""Privacy: protect PII columns batch by batch, before anything is written.

`protect_batch` is applied by the pipeline to every Arrow batch bound for the table *and* for the
quarantine table, so the plaintext of a protected column never reaches a Delta file. Modes:

- `drop`: the column is removed;
- `hash`: HMAC-SHA256 with a key from a secret, as 64 hex chars (equal inputs stay joinable across
  tables built with the same key; without the key a value cannot be confirmed by guessing);
- `mask`: all but `keep_first`/`keep_last` characters replaced (short values are masked entirely);
- `generalize`: numeric buckets (floor to a multiple), string prefixes, date/time truncation;
- `encrypt`: AES-256-GCM, a fresh random 96-bit nonce per value, the column name as associated data;
  stored as `version(1) || nonce(12) || ciphertext || tag(16)` in a binary column. `decrypt_column`
  reverses it, and only with the key.

Mask and generalise are pyarrow compute kernels. Hash and encrypt have no Arrow kernel, so one
batch costs one tight loop of C calls per value, and everything around it is done once per batch on
Arrow/numpy buffers:

- hash: over the *distinct* values only (dictionary-encoded) unless a sample shows nearly all values
  distinct (emails, ids), where encoding and expanding back would cost more than it saves; a batch of
  ≥ 4096 values goes through the compiled kernel of `flows.tables.hmac_batch` (SHA-256 over 256 values
  side by side, straight from the Arrow buffers to hex: ≈ 3× the hashlib loop per CPU-second), smaller
  ones through a hashlib loop where HMAC's inner/outer states are hashed once per key and copied per
  value; the hex becomes the string array directly from buffers. Both give the bytes of
  `hmac.new(key, value, sha256).hexdigest()`.
- encrypt: one `os.urandom` call for all nonces of the batch (12 bytes each, none reused); a batch of
  ≥ 4096 values goes through the compiled loop of `flows.tables.aesgcm_batch`, which calls OpenSSL's
  EVP AES-256-GCM (the libcrypto Python's hashlib uses) per value straight from the Arrow buffers into
  the output buffer in the stored layout, the binary array then built from those buffers; smaller ones
  (or where no libcrypto loads) through a Python loop over one bound `AESGCM.encrypt`.

From Python, `cryptography`'s per-value call (≈ 0.6–0.75 µs) was the floor of encrypt, about 1 M values
per CPU-second whatever the batching around it; the compiled loop avoids that call's overhead
(≈ 3.5 M values per CPU-second). tests/bench/bench_tables_transforms.py measures both modes, and
encrypt against the Python loop in the same run.
"""

from __future__ import annotations

import binascii
import hashlib
import os
from collections.abc import Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daemon.schema.table_transforms import (
    DropRule,
    EncryptRule,
    GeneralizeRule,
    HashRule,
    MaskRule,
    PrivacySpec,
)

CIPHER_VERSION = b"\x01"
NONCE_BYTES = 12
_HKDF_INFO = b"specd/privacy/aes-256-gcm/v1"
MIN_NATIVE_VALUES = 4096  # from this many values a batch is hashed by the compiled kernel (hmac_batch)


class PrivacyError(ValueError):
    """The privacy spec does not fit the data (a protected column is missing, a key is absent)."""


def resolve_keys(spec: PrivacySpec, resolve: Callable[[str], str] | None = None) -> dict[str, bytes]:
    """{secret ref: key bytes} for every key the spec uses (apply time only; never log the result)."""
    if resolve is None:
        from daemon.shared.secrets import resolve_secret as resolve
    return {ref: resolve(ref).encode() for ref in spec.secret_refs()}


def _key(keys: Mapping[str, bytes], ref: str, column: str) -> bytes:
    key = keys.get(ref)
    if not key:
        raise PrivacyError(f"privacy.columns.{column}.key: secret {ref.removeprefix('secret:')} was not provided")
    return key


def encryption_key(secret: bytes) -> bytes:
    """The AES-256 key derived from a secret of any length (HKDF-SHA256)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret)


def _as_text(array: pa.Array) -> pa.Array:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array
    return pc.cast(array, pa.string())


def _binary(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The values as UTF-8 bytes (a binary array; one chunk)."""
    binary = pc.cast(_as_text(array), pa.binary())
    return binary.combine_chunks() if isinstance(binary, pa.ChunkedArray) else binary


def _hmac_digests(values: list[bytes], key: bytes) -> list[bytes]:
    """HMAC-SHA256 (RFC 2104) raw digests; the key's inner/outer states are hashed once, then copied.

    A plain loop: it measured faster (CPU time, 131 072 values a batch) than chaining `map` over the
    hash methods, which keeps a whole batch of OpenSSL contexts alive at once."""
    block = hashlib.sha256(key).digest() if len(key) > 64 else key
    block = block.ljust(64, b"\0")
    inner_copy = hashlib.sha256(bytes(b ^ 0x36 for b in block)).copy
    outer_copy = hashlib.sha256(bytes(b ^ 0x5C for b in block)).copy
    out: list[bytes] = []
    append = out.append
    for value in values:
        inner = inner_copy()
        inner.update(value)
        outer = outer_copy()
        outer.update(inner.digest())
        append(outer.digest())
    return out


def _hex_hmacs(values: pa.Array, key: bytes) -> bytes:
    """64 hex chars per value of a binary array without nulls, concatenated: the compiled batch kernel
    (flows.tables.hmac_batch) for batches big enough to pay for entering it, else the hashlib loop;
    both give the bytes of `hmac.new(key, value, sha256).hexdigest()`."""
    if len(values) >= MIN_NATIVE_VALUES:
        from flows.tables import hmac_batch  # imports numba: only for batches that use it

        offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + len(values) + 1]
        data = values.buffers()[2]
        raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(1, dtype=np.uint8)
        return hmac_batch.hmac_sha256_hex_buffers(offsets, raw, key)
    return binascii.hexlify(b"".join(_hmac_digests(values.to_pylist(), key)))


def _fixed_width_strings(data: bytes, count: int, width: int) -> pa.Array:
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _mostly_distinct(array: pa.Array, sample: int = 2048) -> bool:
    """Whether deduplicating would save little: ≥ 90 % of a leading sample's values are distinct."""
    head = array.slice(0, sample)
    present = len(head) - head.null_count
    return present > 0 and pc.count_distinct(head).as_py() >= 0.9 * present


def hmac_sha256_hex(array: pa.Array, key: bytes) -> pa.Array:
    """HMAC-SHA256 as 64 lowercase hex chars per value (nulls stay null). Computed once per distinct
    value, unless nearly every value is distinct, where dictionary encoding would cost more than it saves."""
    binary = _binary(array)
    if len(binary) * 64 >= 2**31 or not _mostly_distinct(binary):  # int32 offsets of the direct path
        encoded = pc.dictionary_encode(binary)
        hexed = _hex_hmacs(encoded.dictionary, key)
        return pc.take(_fixed_width_strings(hexed, len(encoded.dictionary), 64), encoded.indices)
    valid, bitmap = _validity(binary)
    present = binary.drop_null() if valid is not None else binary
    hexed = _hex_hmacs(present, key)
    if valid is None:
        return _fixed_width_strings(hexed, len(binary), 64)
    offsets = np.concatenate([[0], np.cumsum(valid * 64, dtype=np.int64)]).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), len(binary), [bitmap, pa.py_buffer(offsets), pa.py_buffer(hexed)],
                                 null_count=len(binary) - len(present))


def _validity(array: pa.Array) -> tuple[np.ndarray | None, pa.Buffer | None]:
    """(mask of valid rows, its bitmap) or (None, None) without nulls."""
    if array.null_count == 0:
        return None, None
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    return valid, pa.py_buffer(np.packbits(valid, bitorder="little"))


def encrypt_array(array: pa.Array, key: bytes, column: str) -> pa.Array:
    """AES-256-GCM per value with a random nonce each (so equal values encrypt differently).

    A batch of ≥ MIN_NATIVE_VALUES values goes through the compiled loop of `flows.tables.aesgcm_batch`
    (OpenSSL's EVP calls straight from the Arrow buffers into the output buffer: ≈ 3-4× the Python loop
    per CPU-second); smaller ones, or where no libcrypto loads, through a Python loop over one bound
    `AESGCM.encrypt`. Both store `version || nonce || ciphertext || tag` with a fresh os.urandom nonce."""
    binary = _binary(array)
    if len(binary) >= MIN_NATIVE_VALUES:
        from flows.tables import aesgcm_batch  # imports numba: only for batches that use it

        if aesgcm_batch.available():
            encrypted = _encrypt_native(binary, encryption_key(key), column.encode(), aesgcm_batch)
            if encrypted is not None:
                return encrypted
    return encrypt_loop(binary, key, column)


def encrypt_loop(array: pa.Array, key: bytes, column: str) -> pa.Array:
    """The Python path of `encrypt_array` (small batches, no libcrypto; the benchmark's baseline)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    encrypt = AESGCM(encryption_key(key)).encrypt
    aad = column.encode()
    values = (array if pa.types.is_binary(array.type) else _binary(array)).to_pylist()
    blob = os.urandom(NONCE_BYTES * len(values))
    nonces = [blob[i : i + NONCE_BYTES] for i in range(0, len(blob), NONCE_BYTES)]
    version = CIPHER_VERSION
    out = [
        None if value is None else version + nonce + encrypt(nonce, value, aad)
        for nonce, value in zip(nonces, values, strict=True)
    ]
    return pa.array(out, pa.binary())


def _encrypt_native(binary: pa.Array, key: bytes, aad: bytes, kernel) -> pa.Array | None:
    """The encrypted binary array built from the kernel's buffers (None if it would pass 2 GiB: int32 offsets)."""
    count = len(binary)
    offsets = np.frombuffer(binary.buffers()[1], dtype=np.int32)[binary.offset : binary.offset + count + 1]
    overhead = 1 + NONCE_BYTES + 16
    if int(offsets[-1]) - int(offsets[0]) + overhead * (count - binary.null_count) >= 2**31:
        return None
    data = binary.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    valid, bitmap = _validity(binary)
    out_offsets, out = kernel.encrypt_buffers(offsets, raw, valid, key, aad, CIPHER_VERSION[0])
    return pa.Array.from_buffers(
        pa.binary(), count, [bitmap, pa.py_buffer(out_offsets.astype(np.int32)), pa.py_buffer(out)],
        null_count=binary.null_count,
    )


def decrypt_column(array: pa.Array | pa.ChunkedArray, key: bytes, column: str) -> pa.Array:
    """Plaintext strings of an encrypted column; raises cryptography's InvalidTag with a wrong key."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    decrypt = AESGCM(encryption_key(key)).decrypt
    aad = column.encode()
    out = []
    for value in array.to_pylist():
        if value is None:
            out.append(None)
            continue
        if value[:1] != CIPHER_VERSION:
            raise ValueError(f"{column}: not a specd ciphertext (version byte {value[:1]!r})")
        nonce, body = value[1 : 1 + NONCE_BYTES], value[1 + NONCE_BYTES :]
        out.append(decrypt(nonce, body, aad).decode())
    return pa.array(out, pa.string())


def mask_array(array: pa.Array, rule: MaskRule) -> pa.Array:
    text = _as_text(array)
    length = pc.utf8_length(text)
    keep = rule.keep_first + rule.keep_last
    hidden = pc.max_element_wise(pc.subtract(length, keep), 0)
    partial = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(text, 0, rule.keep_first),
        pc.binary_repeat(pa.scalar(rule.char), hidden),
        pc.utf8_slice_codeunits(text, -rule.keep_last) if rule.keep_last else pc.utf8_slice_codeunits(text, 0, 0),
        "",
    )
    # values no longer than the kept parts would be shown whole: mask those entirely
    full = pc.binary_repeat(pa.scalar(rule.char), length)
    return pc.if_else(pc.greater(length, keep), partial, full)


def generalize_array(array: pa.Array, rule: GeneralizeRule, column: str) -> pa.Array:
    kind = array.type
    if rule.bucket is not None:
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
            raise PrivacyError(f"privacy.columns.{column}.bucket: column is {kind}, not numeric")
        floored = pc.multiply(pc.floor(pc.divide(pc.cast(array, pa.float64()), rule.bucket)), rule.bucket)
        if pa.types.is_integer(kind) and float(rule.bucket).is_integer():
            return pc.cast(floored, kind)
        return floored
    if rule.prefix is not None:
        return pc.utf8_slice_codeunits(_as_text(array), 0, rule.prefix)
    if not (pa.types.is_date(kind) or pa.types.is_timestamp(kind)):
        raise PrivacyError(f"privacy.columns.{column}.truncate: column is {kind}, not a date or timestamp")
    if pa.types.is_date(kind):
        floored = pc.floor_temporal(pc.cast(array, pa.timestamp("s")), unit=rule.truncate, week_starts_monday=True)
        return pc.cast(floored, kind)
    return pc.floor_temporal(array, unit=rule.truncate, week_starts_monday=True)


def protect_array(array: pa.Array, rule, keys: Mapping[str, bytes], column: str) -> pa.Array:
    if isinstance(rule, HashRule):
        return hmac_sha256_hex(array, _key(keys, rule.key, column))
    if isinstance(rule, EncryptRule):
        return encrypt_array(array, _key(keys, rule.key, column), column)
    if isinstance(rule, MaskRule):
        return mask_array(array, rule)
    if isinstance(rule, GeneralizeRule):
        return generalize_array(array, rule, column)
    raise PrivacyError(f"privacy.columns.{column}: unsupported rule {rule!r}")


def protected_schema(schema: pa.Schema, spec: PrivacySpec) -> pa.Schema:
    """The schema after protection (drop removes, hash/mask give strings, encrypt binary)."""
    empty = pa.RecordBatch.from_pylist([], schema=schema)
    return protect_batch(
        empty, spec, {ref: b"schema-only" for rule in spec.columns.values() if (ref := getattr(rule, "key", None))}
    ).schema


def protect_batch(batch: pa.RecordBatch, spec: PrivacySpec, keys: Mapping[str, bytes]) -> pa.RecordBatch:
    """The batch with every PII column of `spec` protected. A declared column that is missing is an
    error: a typo must not leave the real column in plaintext."""
    names = batch.schema.names
    missing = [c for c in spec.columns if c not in names]
    if missing:
        raise PrivacyError(
            f"privacy.columns.{missing[0]}: no such column in the output (columns: {', '.join(names)}); "
            "a misspelt PII column would be written in plaintext"
        )
    arrays, fields = [], []
    for index, field in enumerate(batch.schema):
        rule = spec.columns.get(field.name)
        if rule is None:
            arrays.append(batch.column(index))
            fields.append(field)
            continue
        if isinstance(rule, DropRule):
            continue
        protected = protect_array(batch.column(index), rule, keys, field.name)
        arrays.append(protected)
        fields.append(pa.field(field.name, protected.type, nullable=True))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, metadata=batch.schema.metadata))
