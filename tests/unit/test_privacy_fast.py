"""The compiled HMAC kernel (flows.tables.hmac_batch) gives the bytes of stdlib `hmac` and of the previous
implementation: random and edge-case values (empty, unicode, nulls, every length around SHA-256's block
boundaries, long strings), keys shorter, equal to and longer than a block, sliced arrays, and both of
`hmac_sha256_hex`'s paths (deduplicated and direct) at batch sizes that take the kernel."""

from __future__ import annotations

import hashlib
import hmac
import random

import numpy as np
import pyarrow as pa
import pytest

from flows.tables import hmac_batch
from flows.tables.privacy import MIN_NATIVE_VALUES, _mostly_distinct, hmac_sha256_hex
from tests.unit.test_tables_privacy_equivalence import KEYS, reference_hmac_sha256_hex

BOUNDARIES = [0, 1, 3, 4, 5, 31, 32, 54, 55, 56, 57, 63, 64, 65, 118, 119, 120, 127, 128, 129, 1000, 10_000]


def _values(count: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    alphabet = "abcXYZ019 @._-äöüß€😀中文\u0000\t"
    out: list[str | None] = ["x" * n for n in BOUNDARIES] + ["ü" * 28, "😀" * 14, ""]
    while len(out) < count:
        roll = rng.random()
        if roll < 0.05:
            out.append(None)
        elif roll < 0.1:
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(40, 300))))
        else:
            out.append(f"user{rng.randrange(10**9)}.{rng.choice(alphabet)}@example.org")
    return out


def _stdlib(values: list[str | None], key: bytes) -> list[str | None]:
    return [None if v is None else hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for v in values]


@pytest.mark.parametrize("key", KEYS, ids=lambda k: f"key{len(k)}")
def test_kernel_equals_stdlib_on_every_length(key: bytes) -> None:
    assert hmac_batch.available()
    rng = random.Random(len(key))
    values = [bytes(rng.randrange(256) for _ in range(n)) for n in BOUNDARIES for _ in range(3)]
    values += [rng.randbytes(rng.randint(0, 200)) for _ in range(600)]  # more than one 256-value lane group
    array = pa.array(values, pa.binary())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[: len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)
    hexed = hmac_batch.hmac_sha256_hex_buffers(offsets, data, key)
    assert hexed == b"".join(hmac.new(key, v, hashlib.sha256).hexdigest().encode() for v in values)


@pytest.mark.parametrize("seed", [0, 1])
def test_batches_that_take_the_kernel_equal_stdlib_and_the_previous_implementation(seed: int) -> None:
    distinct = _values(4600, seed)
    assert len(distinct) - distinct.count(None) >= MIN_NATIVE_VALUES
    rng = random.Random(seed)
    repeated = [rng.choice(distinct[:4500]) for _ in range(16_000)]  # dictionary path, > 4,096 distinct values
    assert len(set(repeated) - {None}) >= MIN_NATIVE_VALUES
    assert _mostly_distinct(pa.array(distinct)) and not _mostly_distinct(pa.array(repeated))
    for values in (distinct, repeated):
        array = pa.array(values, pa.string())
        for candidate, expected in ((array, values), (array.slice(11, 4400), values[11:4411])):
            ours = hmac_sha256_hex(candidate, b"hash-key-1")
            assert ours.to_pylist() == _stdlib(expected, b"hash-key-1")
            assert ours.equals(reference_hmac_sha256_hex(candidate, b"hash-key-1"))
            assert ours.null_count == candidate.null_count


def test_all_empty_values_and_large_strings() -> None:
    empty = pa.array([""] * 5000)  # a data buffer of zero bytes
    assert hmac_sha256_hex(empty, b"k").to_pylist() == [hmac.new(b"k", b"", hashlib.sha256).hexdigest()] * 5000
    big = pa.array(_values(5000, 3), pa.large_string())
    assert hmac_sha256_hex(big, b"k").to_pylist() == _stdlib(big.to_pylist(), b"k")
