"""The compiled AES-256-GCM loop (flows.tables.aesgcm_batch) behind `encrypt` privacy: at batch sizes that
take it, decrypt(encrypt(x)) == x through `cryptography` (another implementation than the one that
encrypted) for nulls, empty strings, non-ASCII and long values, sliced and chunked input; every value gets
its own nonce; the stored layout, the column binding and the key are those of the Python loop, which
small batches (and hosts without libcrypto) keep."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flows.tables import aesgcm_batch
from flows.tables.privacy import (
    CIPHER_VERSION,
    MIN_NATIVE_VALUES,
    NONCE_BYTES,
    decrypt_column,
    encrypt_array,
    encryption_key,
)
from tests.unit.test_tables_privacy_equivalence import varied_strings

SECRET, COLUMN = b"encryption-key-1", "name"


def _check(values: list[str | None], cipher: pa.Array) -> None:
    assert cipher.type == pa.binary() and len(cipher) == len(values)
    assert cipher.is_null().to_pylist() == [v is None for v in values]
    assert decrypt_column(cipher, SECRET, COLUMN).to_pylist() == values
    stored = [c for c in cipher.to_pylist() if c is not None]
    aead = AESGCM(encryption_key(SECRET))
    for blob, plain in zip(stored, [v for v in values if v is not None], strict=True):
        assert blob[:1] == CIPHER_VERSION and len(blob) == 1 + NONCE_BYTES + len(plain.encode()) + 16
        assert aead.decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], COLUMN.encode()) == plain.encode()
    nonces = [blob[1 : 1 + NONCE_BYTES] for blob in stored]
    assert len(set(nonces)) == len(nonces)  # a fresh nonce for every value, duplicates included
    assert len(set(stored)) == len(stored)


def test_kernel_batches_round_trip_with_unique_nonces() -> None:
    assert aesgcm_batch.available()
    values = varied_strings(6000, 5) + ["", "", None, "ünïcödé 日本語 🙂", "x" * 5000]
    assert len(values) >= MIN_NATIVE_VALUES and None in values and "" in values
    _check(values, encrypt_array(pa.array(values, pa.string()), SECRET, COLUMN))
    with pytest.raises(InvalidTag):  # bound to its column and its key
        decrypt_column(encrypt_array(pa.array(values), SECRET, COLUMN), SECRET, "other")
    with pytest.raises(InvalidTag):
        decrypt_column(encrypt_array(pa.array(values), SECRET, COLUMN), b"another-key", COLUMN)


def test_kernel_edge_shapes() -> None:
    many = MIN_NATIVE_VALUES + 10
    for values in ([None] * many, [""] * many, ["same"] * many):  # no data buffer; all empty; all equal
        _check(values, encrypt_array(pa.array(values, pa.string()), SECRET, COLUMN))
    values = varied_strings(3 * MIN_NATIVE_VALUES, 9)
    sliced = pa.array(values, pa.string()).slice(17, 2 * MIN_NATIVE_VALUES)
    _check(values[17 : 17 + 2 * MIN_NATIVE_VALUES], encrypt_array(sliced, SECRET, COLUMN))
    chunked = pa.chunked_array([pa.array(values[:3000]), pa.array(values[3000:])])
    _check(values, encrypt_array(chunked, SECRET, COLUMN))
    ints = pa.array(np.arange(many))  # cast to text first, as the Python loop does
    assert decrypt_column(encrypt_array(ints, SECRET, COLUMN), SECRET, COLUMN).to_pylist() == [str(i) for i in range(many)]


def test_without_libcrypto_the_python_loop_gives_the_same_layout(monkeypatch) -> None:
    values = varied_strings(MIN_NATIVE_VALUES + 100, 2)
    monkeypatch.setattr(aesgcm_batch, "available", lambda: False)
    _check(values, encrypt_array(pa.array(values, pa.string()), SECRET, COLUMN))


def test_kernel_refuses_a_wrong_key_length() -> None:
    offsets = np.array([0, 1], dtype=np.int32)
    with pytest.raises(ValueError, match="32-byte key"):
        aesgcm_batch.encrypt_buffers(offsets, np.zeros(1, np.uint8), None, b"short", b"c", 1)
