"""Content identity of a table's rows: an order-insensitive digest computed while the rows are written.

Each row is hashed by DuckDB (`hash()` of the row as a struct, in the table's own column types) and the
hashes are summed modulo 2^64, so the digest does not depend on batch boundaries, file layout or row
order (DuckDB does not keep insertion order through cleaning stages): two builds that write the same
rows get the same digest. It is recorded with the commit (`specd.data_digest`) and lets downstream work
follow data identity — a rebuild that produced the same rows retrains nothing.

Appends add to the previous sum (still content-exact); merges fold the previous digest with the merged
rows (changes whenever rows were merged, even when they matched — conservative). Cost: one hash pass
over the written batches, a few ns per value.
"""

from __future__ import annotations

import hashlib
from typing import Any

_MOD = 1 << 64


class RowDigest:
    def __init__(self, connection: Any = None) -> None:
        """`connection`: a DuckDB connection to hash in (the caller's, left open); default: its own."""
        self.total = 0
        self.rows = 0
        self._connection: Any = connection
        self._own = connection is None

    def add(self, batch: Any) -> None:
        if not batch.num_rows:
            return
        import duckdb

        if self._connection is None:
            self._connection = duckdb.connect()
        self._connection.register("_specd_digest", batch)
        try:
            value = self._connection.sql(
                "SELECT coalesce(sum(hash(_specd_digest)::HUGEINT), 0)::VARCHAR FROM _specd_digest"
            ).fetchall()[0][0]
        finally:
            self._connection.unregister("_specd_digest")
        self.total = (self.total + int(value)) % _MOD
        self.rows += batch.num_rows

    def close(self) -> None:
        if self._connection is not None:
            if self._own:
                self._connection.close()
            self._connection = None

    def value(self, mode: str = "overwrite", previous: str | None = None) -> str:
        """The digest of the table after this write: `<sum hex>-<rows>`; see the module docstring."""
        self.close()
        if mode == "overwrite" or not previous:
            return _format(self.total, self.rows)
        prev_total, prev_rows = parse(previous)
        if mode == "append":
            return _format((prev_total + self.total) % _MOD, prev_rows + self.rows)
        folded = int(hashlib.sha256(f"{previous}|{_format(self.total, self.rows)}".encode()).hexdigest()[:16], 16)
        return _format(folded, prev_rows + self.rows)


def _format(total: int, rows: int) -> str:
    return f"{total:016x}-{rows}"


def parse(digest: str) -> tuple[int, int]:
    try:
        total, rows = digest.split("-", 1)
        return int(total, 16), int(rows)
    except ValueError:
        return int(hashlib.sha256(digest.encode()).hexdigest()[:16], 16), 0
