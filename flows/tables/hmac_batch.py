"""HMAC-SHA256 over a whole Arrow batch in one native loop (numba), hex-encoded in place.

Why: `hash` privacy is HMAC-SHA256 per value, and from Python each value costs six C calls (context copy,
update, digest, twice) — about 1–1.6 M values per CPU-second, whatever the batching around it. Neither
Arrow, Polars nor DuckDB has a keyed SHA-256 (DuckDB's `sha256` composes into HMAC at 0.9 M/s). So the
loop itself is compiled: FIPS 180-4 SHA-256 and RFC 2104 HMAC written over the batch's offsets and data
buffers, with the key's inner and outer pad blocks compressed once per batch (the same saving the Python
path gets from copying pre-hashed states), and the 32-byte digest written out as 64 lowercase hex chars
straight into the output buffer. The bytes are exactly `hmac.new(key, value, sha256).hexdigest()`
(tests/unit/test_privacy_fast.py compares the two on random, empty, unicode and long values).

Numba compiles on first use and caches the machine code under __pycache__ (when writable; ≈ 0.3 s to
load it, some seconds to compile without it), so `flows.tables.privacy` imports this module only for a
batch of ≥ MIN_NATIVE_VALUES values; smaller ones stay on its hashlib loop, which gives the same bytes.
Arithmetic is in int64 holding 32-bit words (numba types uint64-with-int mixes as float; int64 never).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_K = np.array([
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
], dtype=np.int64)
_H0 = np.array([0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19],
               dtype=np.int64)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).copy()



MASK = 0xFFFFFFFF
mask = MASK  # the kernels' spelling (a module-level constant numba freezes at compile time)


@njit(cache=True, nogil=True, inline="always")
def rounds(w, k, s):  # one compression of the 16 words in w[0:16] into state tuple s
    for t in range(16, 64):
        x, y = w[t - 15], w[t - 2]
        s0 = (((x >> 7) | (x << 25)) ^ ((x >> 18) | (x << 14)) ^ (x >> 3)) & mask
        s1 = (((y >> 17) | (y << 15)) ^ ((y >> 19) | (y << 13)) ^ (y >> 10)) & mask
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) & mask
    a, b, c, d, e, f, g, h = s
    for t in range(64):
        big1 = (((e >> 6) | (e << 26)) ^ ((e >> 11) | (e << 21)) ^ ((e >> 25) | (e << 7))) & mask
        t1 = (h + big1 + ((e & f) ^ ((e ^ mask) & g)) + k[t] + w[t]) & mask
        big0 = (((a >> 2) | (a << 30)) ^ ((a >> 13) | (a << 19)) ^ ((a >> 22) | (a << 10))) & mask
        t2 = (big0 + ((a & b) ^ (a & c) ^ (b & c))) & mask
        h, g, f, e, d, c, b, a = g, f, e, (d + t1) & mask, c, b, a, (t1 + t2) & mask
    return ((s[0] + a) & mask, (s[1] + b) & mask, (s[2] + c) & mask, (s[3] + d) & mask,
            (s[4] + e) & mask, (s[5] + f) & mask, (s[6] + g) & mask, (s[7] + h) & mask)

@njit(cache=True, nogil=True, inline="always")
def load(w, data, start, count):  # w[0:16] = big-endian words of data[start:start+count] zero-filled
    for t in range(16):
        w[t] = 0
    for i in range(count):
        w[i >> 2] |= np.int64(data[start + i]) << (24 - 8 * (i & 3))

@njit(cache=True, nogil=True)
def lanes(w, st, k):  # one compression per lane: w uint32[64, L] (rows 0..15 loaded), st uint32[8, L]
    count = w.shape[1]
    for t in range(16, 64):
        for lane in range(count):
            x = np.int64(w[t - 15, lane])
            y = np.int64(w[t - 2, lane])
            s0 = ((x >> 7) | (x << 25)) ^ ((x >> 18) | (x << 14)) ^ (x >> 3)
            s1 = ((y >> 17) | (y << 15)) ^ ((y >> 19) | (y << 13)) ^ (y >> 10)
            w[t, lane] = (np.int64(w[t - 16, lane]) + s0 + np.int64(w[t - 7, lane]) + s1) & mask
    a, b, c, d = st[0].copy(), st[1].copy(), st[2].copy(), st[3].copy()
    e, f, g, h = st[4].copy(), st[5].copy(), st[6].copy(), st[7].copy()
    for t in range(64):
        kt = k[t]
        for lane in range(count):
            ee, aa = np.int64(e[lane]), np.int64(a[lane])
            big1 = ((ee >> 6) | (ee << 26)) ^ ((ee >> 11) | (ee << 21)) ^ ((ee >> 25) | (ee << 7))
            ff, gg = np.int64(f[lane]), np.int64(g[lane])
            t1 = np.int64(h[lane]) + big1 + ((ee & ff) ^ ((ee ^ mask) & gg)) + kt + np.int64(w[t, lane])
            big0 = ((aa >> 2) | (aa << 30)) ^ ((aa >> 13) | (aa << 19)) ^ ((aa >> 22) | (aa << 10))
            bb, cc = np.int64(b[lane]), np.int64(c[lane])
            t2 = big0 + ((aa & bb) ^ (aa & cc) ^ (bb & cc))
            h[lane] = gg
            g[lane] = ff
            f[lane] = ee
            e[lane] = (np.int64(d[lane]) + t1) & mask
            d[lane] = cc
            c[lane] = bb
            b[lane] = aa
            a[lane] = (t1 + t2) & mask
    for lane in range(count):
        st[0, lane] = (np.int64(st[0, lane]) + np.int64(a[lane])) & mask
        st[1, lane] = (np.int64(st[1, lane]) + np.int64(b[lane])) & mask
        st[2, lane] = (np.int64(st[2, lane]) + np.int64(c[lane])) & mask
        st[3, lane] = (np.int64(st[3, lane]) + np.int64(d[lane])) & mask
        st[4, lane] = (np.int64(st[4, lane]) + np.int64(e[lane])) & mask
        st[5, lane] = (np.int64(st[5, lane]) + np.int64(f[lane])) & mask
        st[6, lane] = (np.int64(st[6, lane]) + np.int64(g[lane])) & mask
        st[7, lane] = (np.int64(st[7, lane]) + np.int64(h[lane])) & mask

@njit(cache=True, nogil=True)
def hmac_hex(offsets, data, inner0, outer0, k, hexchars, out):
    """out[64*i : 64*i+64] = hex HMAC of data[offsets[i]:offsets[i+1]], from the pads' states.

    Values of at most 55 bytes (one inner block) go through `lanes`, 256 side by side (SIMD over
    values); longer ones one at a time through `rounds`."""
    width = 256
    w = np.zeros((64, width), dtype=np.uint32)
    st = np.empty((8, width), dtype=np.uint32)
    rows = np.empty(width, dtype=np.int64)
    scalar_w = np.zeros(64, dtype=np.int64)
    inner = (inner0[0], inner0[1], inner0[2], inner0[3], inner0[4], inner0[5], inner0[6], inner0[7])
    outer = (outer0[0], outer0[1], outer0[2], outer0[3], outer0[4], outer0[5], outer0[6], outer0[7])
    total = offsets.size - 1
    row = 0
    while row < total:
        filled = 0
        while row < total and filled < width:
            start, end = np.int64(offsets[row]), np.int64(offsets[row + 1])
            if end - start <= 55:
                for t in range(16):
                    w[t, filled] = 0
                word = 0
                for i in range(end - start):
                    word = (word << 8) | np.int64(data[start + i])
                    if (i & 3) == 3:
                        w[i >> 2, filled] = word & mask
                        word = 0
                rest = end - start
                word = (word << 8) | 0x80
                word <<= 8 * (3 - (rest & 3))
                w[rest >> 2, filled] = word & mask
                w[15, filled] = (64 + rest) * 8
                rows[filled] = row
                filled += 1
            else:  # a long value: the scalar path, straight to its output
                position, s = start, inner
                while end - position >= 64:
                    load(scalar_w, data, position, 64)
                    s = rounds(scalar_w, k, s)
                    position += 64
                rest = end - position
                load(scalar_w, data, position, rest)
                scalar_w[rest >> 2] |= np.int64(0x80) << (24 - 8 * (rest & 3))
                if rest >= 56:
                    s = rounds(scalar_w, k, s)
                    for t in range(16):
                        scalar_w[t] = 0
                scalar_w[15] = ((64 + end - start) * 8) & mask
                scalar_w[14] = ((64 + end - start) * 8) >> 32
                s = rounds(scalar_w, k, s)
                scalar_w[0], scalar_w[1], scalar_w[2], scalar_w[3], scalar_w[4], scalar_w[5], scalar_w[6], scalar_w[7] = s
                scalar_w[8] = 0x80000000
                for t in range(9, 15):
                    scalar_w[t] = 0
                scalar_w[15] = 768
                s = rounds(scalar_w, k, outer)
                for i in range(8):
                    for j in range(8):
                        out[64 * row + 8 * i + j] = hexchars[(s[i] >> (28 - 4 * j)) & 15]
            row += 1
        if filled == 0:
            continue
        part_w, part_st = w, st  # whole (contiguous) arrays: unused lanes compute garbage nobody reads
        for i in range(8):
            for lane in range(width):
                part_st[i, lane] = inner0[i]
        lanes(part_w, part_st, k)
        for lane in range(width):  # outer block: the inner digest, padding, length 96 bytes
            for i in range(8):
                part_w[i, lane] = part_st[i, lane]
            part_w[8, lane] = 0x80000000
            for t in range(9, 15):
                part_w[t, lane] = 0
            part_w[15, lane] = 768
        for i in range(8):
            for lane in range(width):
                part_st[i, lane] = outer0[i]
        lanes(part_w, part_st, k)
        for lane in range(filled):
            base = 64 * rows[lane]
            for i in range(8):
                word = np.int64(part_st[i, lane])
                for j in range(8):
                    out[base + 8 * i + j] = hexchars[(word >> (28 - 4 * j)) & 15]

@njit(cache=True, nogil=True)
def pad_state(pad, k):
    w = np.zeros(64, dtype=np.int64)
    load(w, pad, 0, 64)
    s = rounds(w, k, (_H0[0], _H0[1], _H0[2], _H0[3], _H0[4], _H0[5], _H0[6], _H0[7]))
    return np.array(s, dtype=np.int64)



def available() -> bool:
    return True  # importing this module imports numba (a declared dependency)


def hmac_sha256_hex_buffers(offsets: np.ndarray, data: np.ndarray, key: bytes) -> bytes:
    """64 hex chars per value of a binary array given as (offsets, data): `len(offsets) - 1` values."""
    import hashlib

    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    pads = np.frombuffer(block, dtype=np.uint8)
    inner0 = pad_state(pads ^ np.uint8(0x36), _K)
    outer0 = pad_state(pads ^ np.uint8(0x5C), _K)
    out = np.empty(64 * (offsets.size - 1), dtype=np.uint8)
    hmac_hex(offsets.astype(np.int64, copy=False), data, inner0, outer0, _K, _HEX, out)
    return out.tobytes()
