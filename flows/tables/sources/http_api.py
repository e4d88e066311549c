"""HTTP JSON API source: paginated GETs, retried politely, records streamed as Arrow batches.

Pagination styles: `page` (page number), `offset` (offset/limit), `cursor` (an opaque token the body
returns at `next_cursor_path`), `link` (a next URL in the body or the `Link: <..>; rel="next"` header).
Each GET is retried on 429 (honouring `Retry-After`, capped by `max_backoff_s`), on 5xx and on timeouts
or connection errors, with exponential backoff; when retries run out the error is transient, so the
daemon retries the build later. Other 4xx answers are permanent errors. Messages name the table and
the URL without its query string; the auth header (a secret) is never logged.

Incremental tables: records whose cursor field is not past the watermark are dropped here (and the
watermark is sent as `cursor_param` when the API can filter itself).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from daemon.schema.table_sources import HttpSource
from flows.tables.sources import SourceContext, SourceError


def _path(body: Any, dotted: str) -> Any:
    node = body
    for part in dotted.split(".") if dotted else []:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


class _Fetcher:
    """GET with retries; remembers nothing but the counters (exposed for tests and progress)."""

    def __init__(self, spec: HttpSource, ctx: SourceContext, client, shown_url: str):
        self.spec, self.ctx, self.client, self.shown_url = spec, ctx, client, shown_url
        self.requests = 0
        self.retries = 0

    def _wait(self, attempt: int, hint: float | None) -> None:
        spec = self.spec
        delay = hint if hint is not None else spec.backoff_s * (2**attempt) * (1 + random.random() * 0.1)
        time.sleep(min(delay, spec.max_backoff_s))

    def get(self, url: str, params: dict[str, Any] | None) -> tuple[Any, Any]:
        import httpx

        last = ""
        for attempt in range(self.spec.max_retries + 1):
            if attempt:
                self.retries += 1
            self.requests += 1
            try:
                response = self.client.get(url, params=params or None)  # {} would drop a link's own query
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}"
                if attempt < self.spec.max_retries:
                    self._wait(attempt, None)
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                last = f"HTTP {status}"
                if attempt < self.spec.max_retries:
                    self._wait(attempt, _retry_after(response.headers.get("Retry-After")) if status == 429 else None)
                continue
            if status >= 400:
                snippet = response.text[:200].replace("\n", " ")
                raise SourceError(f"table {self.ctx.table}: GET {self.shown_url} answered {status}: {snippet}")
            try:
                return response.json(), response
            except ValueError:
                raise SourceError(f"table {self.ctx.table}: GET {self.shown_url} did not return JSON") from None
        raise SourceError(
            f"table {self.ctx.table}: GET {self.shown_url} failed after {self.spec.max_retries + 1} attempts "
            f"(last: {last})",
            transient=True,
        )


def _pages(spec: HttpSource, ctx: SourceContext, fetcher: _Fetcher, base_url: str) -> Iterator[list[dict]]:
    pagination = spec.pagination
    params: dict[str, Any] = dict(spec.params)
    if spec.cursor_param and ctx.cursor and ctx.watermark is not None:
        params[spec.cursor_param] = ctx.watermark
    if pagination.style != "none" and pagination.size_param:
        params[pagination.size_param] = pagination.page_size
    url: str | None = base_url
    page_number, offset, pages = pagination.start_page, 0, 0
    while url is not None:
        if pagination.max_pages is not None and pages >= pagination.max_pages:
            return
        if pagination.style == "page":
            params[pagination.page_param] = page_number
        elif pagination.style == "offset":
            params[pagination.offset_param] = offset
        body, response = fetcher.get(url, params)
        pages += 1
        records = _path(body, spec.records)
        if records is None:
            records = []
        if not isinstance(records, list):
            raise SourceError(
                f"table {ctx.table}: source.records: {spec.records or 'the body'!r} is not a list of records"
            )
        if records:
            yield records
        # a short page is the last one (when we chose the page size); an empty page always is
        more = bool(records) and (len(records) >= pagination.page_size or not pagination.size_param)
        if pagination.style == "none":
            return
        if pagination.style == "page":
            page_number += 1
            url = base_url if more else None
        elif pagination.style == "offset":
            offset += len(records)
            url = base_url if more else None
        elif pagination.style == "cursor":
            token = _path(body, pagination.next_cursor_path)
            if not token or not records:
                return
            params[pagination.cursor_param] = token
        else:  # link
            link = _path(body, pagination.next_link_path) if pagination.next_link_path else None
            if link is None and not pagination.next_link_path:
                link = response.links.get("next", {}).get("url")
            url = urljoin(url, link) if link else None
            params = {}  # the next link carries its own query


def _batches(spec: HttpSource, pages: Iterator[list[dict]]) -> Iterator[list[dict]]:
    buffer: list[dict] = []
    for records in pages:
        buffer.extend(r if isinstance(r, dict) else {"value": r} for r in records)
        if len(buffer) >= spec.batch_rows:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def _newer(table: pa.Table, ctx: SourceContext) -> pa.Table:
    if not ctx.cursor or ctx.watermark is None:
        return table
    if ctx.cursor not in table.column_names:
        raise SourceError(f"table {ctx.table}: incremental.cursor {ctx.cursor!r} is not a field of the records")
    column = table.column(ctx.cursor)
    try:
        watermark = pa.scalar(ctx.watermark).cast(column.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        watermark = pa.scalar(str(ctx.watermark)).cast(column.type)
    return table.filter(pc.fill_null(pc.greater(column, watermark), False))


def read(spec: HttpSource, ctx: SourceContext) -> pa.RecordBatchReader:
    import httpx

    url = ctx.resolve_secret(spec.url) if spec.url.startswith("secret:") else spec.url
    shown = (
        f"(url from secret {spec.url[7:]})"
        if spec.url.startswith("secret:")
        else urlsplit(url)._replace(query="").geturl()
    )
    headers = {"Accept": "application/json", **spec.headers}
    if spec.auth is not None:
        try:
            value = ctx.resolve_secret(spec.auth.value)
        except Exception as exc:
            raise SourceError(f"table {ctx.table}: source.auth.value: {exc}") from None
        headers[spec.auth.header] = f"{spec.auth.scheme} {value}" if spec.auth.scheme else value
    client = httpx.Client(timeout=spec.timeout_s, headers=headers, follow_redirects=True, verify=_verify(url, ctx))
    fetcher = _Fetcher(spec, ctx, client, shown)
    chunks = _batches(spec, _pages(spec, ctx, fetcher, url))
    try:
        first_records = next(chunks, None)
    except BaseException:
        client.close()
        raise
    if first_records is None:
        client.close()
        return pa.RecordBatchReader.from_batches(pa.schema([]), iter(()))
    first = pa.Table.from_pylist(first_records)
    schema = first.schema

    def tables() -> Iterator[pa.RecordBatch]:
        try:
            yield from _newer(first, ctx).to_batches()
            for records in chunks:
                try:
                    table = pa.Table.from_pylist(records, schema=schema)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise SourceError(
                        f"table {ctx.table}: record fields changed type between pages (schema from the first "
                        f"{len(first_records)} records): {exc}"
                    ) from None
                yield from _newer(table, ctx).to_batches()
        finally:
            client.close()

    reader = pa.RecordBatchReader.from_batches(schema, tables())
    return reader


def _verify(url: str, ctx: SourceContext) -> Any:
    """httpx `verify`: the environment's CA when `tls.ca` is set; `tls.required` refuses plain http://
    (a literal one fails validate; this catches one that came from a secret)."""
    from daemon.shared import tls

    settings = dict(ctx.tls or {})
    if settings.get("required") and not url.lower().startswith("https://"):
        raise SourceError(f"table {ctx.table}: source.url: tls.required refuses a plaintext http:// API")
    files = tls.resolve(settings, resolve=ctx.resolve_secret) if settings.get("ca") else None
    return tls.client_context(files) if files is not None else True
