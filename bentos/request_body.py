"""Reading a request body with a size limit, before any JSON parsing.

Why a limit: a worker holds a body in memory while it parses it, so one 2 GB POST can take a worker
down. The limit comes from the routing file's `settings.max_request_bytes` when the daemon writes one,
else from `SPECD_MAX_REQUEST_BYTES` in the service's environment, else 1 MiB (a 256-row batch of a
wide model is well under that). A declared `Content-Length` above the limit is refused before reading;
a chunked body is refused as soon as it passes the limit. Either way the connection is closed, so the
unread rest of the body cannot be taken for the next request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from bentos.validation import RequestError

LIMIT_ENV = "SPECD_MAX_REQUEST_BYTES"
DEFAULT_LIMIT = 1 << 20


def body_limit(settings: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> int:
    value = settings.get("max_request_bytes") or environ.get(LIMIT_ENV) or DEFAULT_LIMIT
    try:
        limit = int(value)
    except (TypeError, ValueError):
        return DEFAULT_LIMIT
    return limit if limit > 0 else DEFAULT_LIMIT


def _too_large(limit: int, size: str) -> RequestError:
    return RequestError(413, "body", f"request body of {size} exceeds the limit of {limit} bytes "
                                     f"(send fewer rows per request, or raise {LIMIT_ENV})")


def closes_connection(error: RequestError) -> bool:
    """A refused body was not read to its end: the answer must close the connection."""
    return error.status == 413 and error.field == "body"


async def read_body(request: Any, limit: int) -> bytes:
    """The body of a Starlette request, or a 413 `RequestError` naming the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise RequestError(400, "Content-Length", f"not a number: {declared!r}") from None
        if length > limit:
            raise _too_large(limit, f"{length} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, f"at least {size} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
