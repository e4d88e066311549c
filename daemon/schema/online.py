"""The `online` kind: a table's latest row per key, materialised into the online store (Redis).

Nobody writes these by hand: `flows/online/derive.py` derives one `online/<table>` per table spec with
an `online:` block, so the table file stays the single source of truth and errors point at it. As its
own resource it gets what every kind gets: a plan line, a fingerprint (the block + the table's
fingerprint), dependency ordering after `table/<table>`, status, prune and revert.
"""

from __future__ import annotations

from pydantic import Field

from daemon.schema.base import Ref, ResourceName, SpecModel


class OnlineSpec(SpecModel):
    table: ResourceName
    keys: list[str] = Field(min_length=1)
    features: list[str] = Field(default_factory=list)  # empty: every column but the keys, read at apply
    timestamp: str | None = None
    ttl_s: int | None = Field(default=None, ge=1)
    store: str = "default"
    prune: bool | None = None  # the table's prune policy (None: the environment's)

    def references(self) -> list[Ref]:
        return [Ref("table", self.table, ("table",))]
