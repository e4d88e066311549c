"""The batched hash/encrypt of flows.tables.privacy against the per-value implementation they replaced.

Hash output must be byte-identical to what earlier builds wrote (hashed columns stay joinable across
tables built before and after), so the reference below is that implementation, kept verbatim, and
stdlib `hmac`. Encrypt is random by design: its ciphertexts must decrypt, bind to the column, use a
fresh nonce per value and keep the stored layout `version || nonce || ciphertext || tag`.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flows.tables.privacy import (
    CIPHER_VERSION,
    NONCE_BYTES,
    decrypt_column,
    encrypt_array,
    encryption_key,
    hmac_sha256_hex,
)
from flows.tables.privacy import _mostly_distinct as mostly_distinct


# ---------------------------------------------------------------- the previous implementation, verbatim
def _as_text(array: pa.Array) -> pa.Array:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array
    return pc.cast(array, pa.string())


def _over_distinct(array: pa.Array, function: Callable[[list], list], out_type: pa.DataType) -> pa.Array:
    encoded = pc.dictionary_encode(array)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    dictionary = pa.array(function(encoded.dictionary.to_pylist()), out_type)
    return pc.take(dictionary, encoded.indices)


def reference_hmac_sha256_hex(array: pa.Array, key: bytes) -> pa.Array:
    block = hashlib.sha256(key).digest() if len(key) > 64 else key
    block = block.ljust(64, b"\0")
    inner_copy = hashlib.sha256(bytes(b ^ 0x36 for b in block)).copy
    outer_copy = hashlib.sha256(bytes(b ^ 0x5C for b in block)).copy

    def one(value: bytes | None) -> str | None:
        if value is None:
            return None
        inner = inner_copy()
        inner.update(value)
        outer = outer_copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def digest_all(values: list) -> list:
        return list(map(one, values))

    return _over_distinct(pc.cast(_as_text(array), pa.binary()), digest_all, pa.string())


# ---------------------------------------------------------------- inputs
def varied_strings(count: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    alphabet = "abcXYZ019 @.-_éüß日本語🙂\t\n\x00"
    pool: list[str | None] = [None, "", " ", "a", "ann@example.org", "Ann@Example.org", "x" * 55, "y" * 56, "z" * 64,
                              "w" * 119, "v" * 200, "é" * 40, "🙂" * 20, "\x00", "null"]
    values: list[str | None] = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.1:
            values.append(None)
        elif roll < 0.3:
            values.append(rng.choice(pool))  # duplicates, empty strings, block-boundary lengths
        elif roll < 0.4 and values:
            values.append(rng.choice(values))  # more duplicates
        else:
            values.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90))))
    return values


KEYS = [b"k", b"hash-key-1", b"\xff\x00" * 32, b"a" * 64, b"long-key-" * 20, "schlüssel-🙂".encode()]


@pytest.mark.parametrize("key", KEYS, ids=lambda k: f"key{len(k)}")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hash_bytes_equal_previous_implementation_and_stdlib(key: bytes, seed: int) -> None:
    values = varied_strings(700, seed)
    array = pa.array(values, pa.string())
    ours = hmac_sha256_hex(array, key)
    assert ours.type == pa.string()
    assert ours.equals(reference_hmac_sha256_hex(array, key))
    assert ours.to_pylist() == [None if v is None else hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for v in values]


def distinct_strings(count: int, seed: int) -> list[str | None]:
    """Nearly all distinct (emails, ids): the path that skips deduplication."""
    rng = random.Random(seed)
    return [None if rng.random() < 0.05 else f"user{i}.{rng.choice('äb🙂')}@example.org" for i in range(count)]


@pytest.mark.parametrize("seed", [0, 1])
def test_hash_of_nearly_distinct_values_equals_previous_implementation(seed: int) -> None:
    values = distinct_strings(3000, seed) + ["user5@example.org"] * 3 + [""]  # a few duplicates after the sample
    array = pa.array(values, pa.string())
    assert mostly_distinct(array) and not mostly_distinct(pa.array(varied_strings(700, seed)))  # both paths are tested
    for candidate in (array, array.slice(7, 2500), pa.array([v for v in values if v is not None])):
        ours = hmac_sha256_hex(candidate, b"hash-key-1")
        assert ours.equals(reference_hmac_sha256_hex(candidate, b"hash-key-1"))
        assert ours.null_count == candidate.null_count


@pytest.mark.parametrize(
    "array",
    [
        pa.array([], pa.string()),
        pa.array([None, None], pa.string()),
        pa.array(["same"] * 5),
        pa.array(varied_strings(300, 7), pa.large_string()),
        pa.array([1, None, -7, 1, 2**40]),  # non-strings are hashed as their text
        pa.array(varied_strings(400, 8), pa.string()).slice(13, 250),  # a sliced (offset) array
        pa.chunked_array([pa.array(["a", None, "b"]), pa.array(["b", "c", None])]),
    ],
    ids=["empty", "all-null", "one-value", "large-string", "integers", "sliced", "chunked"],
)
def test_hash_edge_shapes_equal_previous_implementation(array) -> None:
    key = b"edge-key"
    ours = hmac_sha256_hex(array, key)
    reference = reference_hmac_sha256_hex(array, key)
    assert ours.to_pylist() == reference.to_pylist()
    assert ours.equals(reference.combine_chunks() if isinstance(reference, pa.ChunkedArray) else reference)


@pytest.mark.parametrize("seed", [0, 3])
def test_encrypt_round_trips_with_fresh_nonces_and_the_stored_layout(seed: int) -> None:
    values = varied_strings(600, seed)
    secret, column = b"encryption-key-1", "name"
    cipher = encrypt_array(pa.array(values, pa.string()), secret, column)
    assert cipher.type == pa.binary() and len(cipher) == len(values)
    assert cipher.is_null().to_pylist() == [v is None for v in values]
    assert decrypt_column(cipher, secret, column).to_pylist() == values
    stored = [c for c in cipher.to_pylist() if c is not None]
    aead = AESGCM(encryption_key(secret))
    for blob, plain in zip(stored, [v for v in values if v is not None], strict=True):
        assert blob[:1] == CIPHER_VERSION and len(blob) == 1 + NONCE_BYTES + len(plain.encode()) + 16
        nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        assert aead.decrypt(nonce, body, column.encode()) == plain.encode()
    nonces = [blob[1 : 1 + NONCE_BYTES] for blob in stored]
    assert len(set(nonces)) == len(nonces)  # a fresh nonce for every value, duplicates included
    assert len(set(stored)) == len(stored)  # equal plaintexts give different ciphertexts
    with pytest.raises(InvalidTag):  # bound to its column
        decrypt_column(cipher, secret, "other")
    with pytest.raises(InvalidTag):
        decrypt_column(cipher, b"another-key", column)


def test_encrypt_edge_shapes() -> None:
    secret = b"k"
    assert encrypt_array(pa.array([], pa.string()), secret, "c").to_pylist() == []
    assert encrypt_array(pa.array([None, None], pa.string()), secret, "c").to_pylist() == [None, None]
    sliced = pa.array(["a", None, "", "dé", None, "xyz"]).slice(1, 4)
    assert decrypt_column(encrypt_array(sliced, secret, "c"), secret, "c").to_pylist() == [None, "", "dé", None]
    chunked = pa.chunked_array([pa.array(["a", None]), pa.array(["b"])])
    assert decrypt_column(encrypt_array(chunked, secret, "c"), secret, "c").to_pylist() == ["a", None, "b"]
