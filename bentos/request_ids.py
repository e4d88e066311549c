"""Request ids of the A/B service: 128 random bits as 32 hex digits (the shape of `uuid4().hex`).

Why not `uuid.uuid4()`: it makes a system call (`os.urandom(16)`) and builds a UUID object per request,
~1 % of a request's CPU. The ids come from the same OS randomness, drawn 256 at a time; unpredictable
as before, so a client cannot guess another client's request id to send feedback for it.
"""

from __future__ import annotations

import os


class RequestIds:
    """Used on one thread (the worker's event loop)."""

    BATCH = 256

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> str:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(16 * self.BATCH), 0
        start = self._at
        self._at = start + 16
        return self._pool[start:self._at].hex()
