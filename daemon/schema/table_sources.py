"""Table sources outside the lake: SQL databases (`type: sql`) and HTTP JSON APIs (`type: http`).

Connection strings and tokens never live in Git: a database URL is a `${secret:NAME}` (the one literal
allowed is an embedded SQLite file under the data root, which has no credentials), and an API's auth
header value is a secret. Both honour the table's `incremental.cursor`: they emit only rows newer than
the watermark of the previous build (the SQL source in cursor order), so a scheduled refresh reads
only what is new.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from daemon.schema.base import SecretRef, SpecModel
from daemon.shared.secrets import is_secret_ref

SQLITE_PREFIX = "sqlite:///"


def _database_url(value: str) -> str:
    if is_secret_ref(value):
        return value
    if value.startswith(SQLITE_PREFIX):
        path = value[len(SQLITE_PREFIX) :]
        if not path or path.startswith("/") or path.startswith("~"):
            raise ValueError("a literal sqlite URL must name a file relative to the data root: sqlite:///data/shop.db")
        normalised = posixpath.normpath(path)
        if normalised == ".." or normalised.startswith("../") or "?" in path:
            raise ValueError(f"{value!r} escapes the data root or carries options")
        return SQLITE_PREFIX + normalised
    raise ValueError(
        "a database URL carries credentials: use ${secret:NAME} (a SQLAlchemy URL such as "
        "postgresql+psycopg://user:pw@host/db kept in the environment or a secret file); "
        "only sqlite:///relative/path.db may be written literally"
    )


def _select_query(value: str) -> str:
    text = value.strip().rstrip(";").strip()
    if not re.match(r"^(select|with)\b", text, re.IGNORECASE):
        raise ValueError("the query must be one SELECT (or WITH ... SELECT) statement")
    stripped = re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", "''", text)
    if ";" in stripped:
        raise ValueError("the query must be a single statement (no ';' inside)")
    return text


class SqlSource(SpecModel):
    """Rows of one SELECT against a SQLAlchemy database, streamed in chunks."""

    type: Literal["sql"]
    url: Annotated[str, AfterValidator(_database_url)]
    query: Annotated[str, AfterValidator(_select_query)]
    chunk_rows: int = Field(default=50_000, ge=1, le=1_000_000)
    connect_timeout_s: float = Field(default=10.0, gt=0)


def _http_url(value: str) -> str:
    if is_secret_ref(value) or re.match(r"^https?://[^\s/$.?#][^\s]*$", value):
        return value
    raise ValueError("url must be an http(s):// URL or ${secret:NAME}")


_DOTTED = r"^([A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*)?$"


class PaginationSpec(SpecModel):
    """How to walk the pages: `page` numbers, `offset`/limit, an opaque `cursor` from the body, or a next
    `link` (a URL in the body at `next_link_path`, else the `Link: <...>; rel="next"` header)."""

    style: Literal["none", "page", "offset", "cursor", "link"] = "none"
    page_size: int = Field(default=100, ge=1, le=100_000)
    size_param: str | None = "limit"  # query parameter carrying page_size (None: do not send it)
    page_param: str = "page"
    start_page: int = Field(default=1, ge=0)
    offset_param: str = "offset"
    cursor_param: str = "cursor"
    next_cursor_path: str = Field(default="next_cursor", pattern=_DOTTED)  # where the body holds the next cursor
    next_link_path: str | None = Field(default=None, pattern=_DOTTED)
    max_pages: int | None = Field(default=None, ge=1)


class HttpAuth(SpecModel):
    header: str = Field(default="Authorization", pattern=r"^[A-Za-z0-9-]+$")
    value: SecretRef
    scheme: str | None = "Bearer"  # sent as "<scheme> <value>"; None: the value alone


class HttpSource(SpecModel):
    """Records of a paginated JSON API, retried on 429/5xx/timeouts with backoff."""

    type: Literal["http"]
    url: Annotated[str, AfterValidator(_http_url)]
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)  # non-secret headers; credentials go in `auth`
    auth: HttpAuth | None = None
    records: str = Field(default="", pattern=_DOTTED)  # dotted path to the list of records; '' = the body
    pagination: PaginationSpec = Field(default_factory=PaginationSpec)
    cursor_param: str | None = None  # incremental tables: also send the watermark as this query parameter
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0, le=20)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)
    batch_rows: int = Field(default=10_000, ge=1)
