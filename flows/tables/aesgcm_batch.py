"""AES-256-GCM over a whole Arrow batch in one native loop: numba calling OpenSSL's EVP interface.

Why: `encrypt` privacy is one AES-GCM encryption per value. From Python, `cryptography`'s
`AESGCM.encrypt` costs ≈ 0.6–0.75 µs a call (argument conversion, a cipher-context copy, the result's
allocation) while the cipher itself on a short value is a fraction of that; with slicing the nonce and
concatenating the stored layout around it, the Python loop topped out near 1 M values per CPU-second
whatever the batching. So the loop is compiled and calls the *same OpenSSL primitives* directly (the
libcrypto Python's own `hashlib` is linked against): one EVP context keyed once per batch, then per value
a new IV, the associated data, the plaintext and the tag, written straight into the output buffer in the
stored layout `version(1) || nonce(12) || ciphertext || tag(16)`. Nothing cryptographic is written here:
AES and GHASH are OpenSSL's; `cryptography` (flows.tables.privacy.decrypt_column) decrypts the result.

Security is that of the Python path: a fresh 96-bit nonce per value, all from one `os.urandom` call per
batch (each value its own 12 bytes, so none is reused); the key only from the secret reference (HKDF'd
by the caller); the key schedule lives in the EVP context, which `EVP_CIPHER_CTX_free` cleanses, and the
key's copy handed to the kernel is zeroed afterwards. Every EVP return code is checked.

The calls are `numba.types.ExternalFunction`s resolved by symbol name, each name registered with LLVM at
the address in that one libcrypto (so no other library exporting the same names is ever called), and the
machine code caches under __pycache__ like flows.tables.hmac_batch. `available()` is False where no libcrypto ≥ 1.1 loads; the
caller then keeps its Python loop, which gives the same layout.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache

import numpy as np
from numba import njit, types

NONCE_BYTES = 12
TAG_BYTES = 16
_EVP_CTRL_GCM_SET_IVLEN = 0x9
_EVP_CTRL_GCM_GET_TAG = 0x10


def _libcrypto_path() -> str | None:
    """The libcrypto this process already uses (hashlib's), else the system's."""
    import hashlib  # noqa: F401  (loads _hashlib, hence its libcrypto)

    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(" ", 1)[-1].strip()
                if "/libcrypto" in path and ".so" in path:
                    return path
    except OSError:
        pass
    return ctypes.util.find_library("crypto")


@cache
def _kernel():
    """The compiled kernel, or None without a usable libcrypto (≥ 1.1: the EVP AEAD controls used here)."""
    path = _libcrypto_path()
    if not path:
        return None
    try:
        lib = ctypes.CDLL(path)
        version = lib.OpenSSL_version_num
        version.restype = ctypes.c_ulong
        if version() < 0x10100000:
            return None
        if not all(hasattr(lib, name) for name in _SYMBOLS):
            return None
    except (OSError, AttributeError):
        return None
    import llvmlite.binding as llvm

    # before the first call: the kernel's symbols resolve by name, and explicit symbols come first, so every
    # call goes to this one library even where another exports the same names
    for name in _SYMBOLS:
        llvm.add_symbol(name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
    return encrypt_rows


_SYMBOLS = ("EVP_CIPHER_CTX_new", "EVP_CIPHER_CTX_free", "EVP_aes_256_gcm", "EVP_EncryptInit_ex", "EVP_EncryptUpdate",
            "EVP_EncryptFinal_ex", "EVP_CIPHER_CTX_ctrl")
_P, _I = types.uintp, types.intc  # pointers pass as addresses (uintp); the C ints of the EVP calls
_ctx_new = types.ExternalFunction("EVP_CIPHER_CTX_new", _P())
_ctx_free = types.ExternalFunction("EVP_CIPHER_CTX_free", types.void(_P))
_aes_256_gcm = types.ExternalFunction("EVP_aes_256_gcm", _P())
_init = types.ExternalFunction("EVP_EncryptInit_ex", _I(_P, _P, _P, _P, _P))
_update = types.ExternalFunction("EVP_EncryptUpdate", _I(_P, _P, _P, _P, _I))
_final = types.ExternalFunction("EVP_EncryptFinal_ex", _I(_P, _P, _P))
_ctrl = types.ExternalFunction("EVP_CIPHER_CTX_ctrl", _I(_P, _I, _I, _P))


@njit(cache=True, nogil=True)
def encrypt_rows(key, aad, aad_len, offsets, data, valid, nonces, out_offsets, out, version, set_ivlen, get_tag):
    """0 when every row was encrypted into `out`; -1 if no context could be made; else 1 + the failing row."""
    ctx = _ctx_new()
    if ctx == 0:
        return -1
    written = np.zeros(2, dtype=np.int32)
    outl = written.ctypes.data
    status = 0
    if (_init(ctx, _aes_256_gcm(), 0, 0, 0) != 1 or _ctrl(ctx, set_ivlen, 12, 0) != 1
            or _init(ctx, 0, 0, key.ctypes.data, 0) != 1):
        status = 1
    base, nonce_base, src = out.ctypes.data, nonces.ctypes.data, data.ctypes.data
    check_valid = len(valid) > 0
    for row in range(len(offsets) - 1):
        if status != 0:
            break
        if check_valid and valid[row] == 0:
            continue
        start, length, at = offsets[row], offsets[row + 1] - offsets[row], out_offsets[row]
        out[at] = version
        for j in range(12):
            out[at + 1 + j] = nonces[row * 12 + j]
        body = base + at + 13
        if (_init(ctx, 0, 0, 0, nonce_base + row * 12) != 1
                or (aad_len > 0 and _update(ctx, 0, outl, aad.ctypes.data, aad_len) != 1)
                or _update(ctx, body, outl, src + start, length) != 1 or written[0] != length
                or _final(ctx, body + length, outl) != 1 or written[0] != 0
                or _ctrl(ctx, get_tag, 16, body + length) != 1):
            status = row + 1
    _ctx_free(ctx)
    return status


def available() -> bool:
    return _kernel() is not None


def encrypt_buffers(
    offsets: np.ndarray, data: np.ndarray, valid: np.ndarray | None, key: bytes, aad: bytes, version: int
) -> tuple[np.ndarray, np.ndarray]:
    """(int64 output offsets, output bytes) of `version || nonce || AES-256-GCM(key, value, aad) || tag` per
    row of a binary array given by its `offsets` (n + 1) and `data`; rows where `valid` is 0 get no bytes."""
    kernel = _kernel()
    if kernel is None:
        raise RuntimeError("no usable libcrypto for the AES-GCM batch kernel")
    if len(key) != 32:
        raise ValueError("AES-256-GCM needs a 32-byte key")
    count = len(offsets) - 1
    lengths = np.diff(offsets).astype(np.int64) + (1 + NONCE_BYTES + TAG_BYTES)
    if valid is not None:
        lengths[~valid] = 0
    out_offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_offsets[1:])
    out = np.empty(max(int(out_offsets[-1]), 1), dtype=np.uint8)
    nonces = np.frombuffer(os.urandom(NONCE_BYTES * count) or b"\0", dtype=np.uint8)
    key_copy = np.frombuffer(bytearray(key), dtype=np.uint8)
    aad_array = np.frombuffer(aad or b"\0", dtype=np.uint8)
    valid_array = valid.astype(np.uint8) if valid is not None else np.ones(0, dtype=np.uint8)
    try:
        status = kernel(
            key_copy, aad_array, len(aad), offsets.astype(np.int64, copy=False),
            data if len(data) else np.zeros(1, dtype=np.uint8), valid_array, nonces, out_offsets, out, version,
            _EVP_CTRL_GCM_SET_IVLEN, _EVP_CTRL_GCM_GET_TAG,
        )
    finally:
        key_copy[:] = 0
    if status != 0:
        where = "creating the cipher context" if status < 0 else f"row {status - 1}"
        raise RuntimeError(f"AES-256-GCM (libcrypto EVP) failed at {where}")
    return out_offsets, out
