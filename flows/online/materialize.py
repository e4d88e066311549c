"""Materialise a table's latest row per key from its current Delta version into the online store.

Why a diff and not a reload: the store records which Delta version it holds, so the same version again
writes nothing, a new version writes only the keys whose values changed (the two versions are read and
compared, latest row per key, with polars), and a restored earlier version (a `git revert`) is just
another diff. Crash-safety comes from the order of writes: a `pending_*` marker in the table's meta hash
first, the rows in pipelined batches, the completed version last. A run that finds a pending marker
does not trust the store's contents and rewrites every key (and removes keys no longer in the table),
so kill -9 anywhere, then a re-run, leaves the store equal to the version.

Also a command, `python -m flows.online.materialize` (JSON job on stdin, JSON result on stdout): the
adapter runs it in its own process, as the table builds run.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from flows.online import (
    M_COMPLETED,
    M_DATA_ID,
    M_FINGERPRINT,
    M_KEYS,
    M_LAYOUT,
    M_PENDING_FINGERPRINT,
    M_PENDING_VERSION,
    M_PRUNE,
    M_SCHEMA,
    M_TTL,
    M_VERSION,
    feature_field,
    meta_key,
    sorted_keys,
    tables_key,
    ts_field,
)

KEY = "__key"
TS = "__ts"


@dataclass(frozen=True)
class Job:
    table: str
    uri: str
    keys: list[str]
    features: list[str] = field(default_factory=list)  # empty: every column but keys and timestamp
    timestamp: str | None = None
    ttl_s: int | None = None
    fingerprint: str = ""
    prune: bool | None = None
    storage_options: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    table: str
    version: int
    mode: str  # noop | diff | full
    written: int = 0  # keys whose fields were set (HSET)
    deleted: int = 0  # keys whose fields of this table were removed
    unchanged: int = 0
    keys: int = 0  # keys holding this table's features afterwards
    ttl_refreshed: int = 0
    seconds: float = 0.0
    from_version: int | None = None


def read_meta(client: Any, prefix: str, table: str) -> dict[str, str]:
    raw = client.hgetall(meta_key(prefix, table))
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()}


# ---------------------------------------------------------------------------------------- reading Delta
def _open(uri: str, version: int, options: dict[str, str]) -> Any:
    from deltalake import DeltaTable

    return DeltaTable(uri, version=version, storage_options=options or None)


def resolve_features(job: Job, columns: list[str]) -> list[str]:
    """The features to serve; unknown key/feature/timestamp columns are an error naming them."""
    wanted = [*job.keys, *job.features, *([job.timestamp] if job.timestamp else [])]
    unknown = [c for c in wanted if c not in columns]
    if unknown:
        raise ValueError(f"online: table {job.table} has no column {', '.join(map(repr, unknown))} (columns: {columns})")
    if job.features:
        return list(job.features)
    skip = {*job.keys, job.timestamp}
    return [c for c in columns if c not in skip and not c.startswith("_specd")]


def latest_rows(table: Any, job: Job, features: list[str], commit_ts_s: float) -> tuple[Any, dict[str, str]]:
    """Latest row per key, every value encoded as the store's text (polars, vectorised), and the
    features' types in the model schema's words."""
    import polars as pl

    keys = sorted_keys(job.keys)
    columns = list(dict.fromkeys([*keys, *features, *([job.timestamp] if job.timestamp else [])]))
    frame = pl.from_arrow(table.to_pyarrow_table(columns=columns)).drop_nulls(subset=keys)  # no entity without a key
    if job.timestamp:
        frame = frame.sort(job.timestamp, nulls_last=False, maintain_order=True)
    frame = frame.unique(subset=keys, keep="last", maintain_order=True)
    key_parts = []
    for i, name in enumerate(keys):
        key_parts += [pl.lit(("|" if i else "") + f"{name}="), _encoded(pl.col(name), frame.schema[name])]
    exprs = [pl.concat_str([pl.lit(PREFIX_PLACEHOLDER + ":"), *key_parts]).alias(KEY)]
    exprs += [_encoded(pl.col(f), frame.schema[f]).alias(f) for f in features]
    if job.timestamp:
        exprs.append((pl.col(job.timestamp).cast(pl.Datetime("us")).dt.epoch("us") / 1e6).cast(pl.Utf8).alias(TS)
                     if frame.schema[job.timestamp].is_temporal() else pl.col(job.timestamp).cast(pl.Utf8).alias(TS))
    else:
        exprs.append(pl.lit(repr(commit_ts_s)).alias(TS))
    return frame.select(exprs), feature_dtypes(frame.schema, features)


PREFIX_PLACEHOLDER = "\x00"  # replaced by the store prefix (keeps frames comparable across prefixes)


def _encoded(expr: Any, dtype: Any) -> Any:
    import polars as pl

    if dtype == pl.Boolean:
        return expr.cast(pl.Int8).cast(pl.Utf8)
    if dtype.is_float():
        return expr.cast(pl.Float64).cast(pl.Utf8)  # polars prints the shortest round-trip form
    return expr.cast(pl.Utf8)


def feature_dtypes(schema: Any, features: list[str]) -> dict[str, str]:
    from flows.training.schema import schema_type

    return {name: schema_type(str(schema[name])) or str(schema[name]) for name in features}


def diff(new: Any, old: Any, features: list[str], with_ts: bool) -> tuple[Any, Any]:
    """(rows to write: new or changed, keys to delete: gone) between two encoded frames."""
    import polars as pl

    compared = [*features, *([TS] if with_ts else [])]
    joined = new.join(old.select([KEY, *compared]).with_columns(pl.lit(True).alias("__was")), on=KEY, how="left", suffix="__old")
    changed = pl.col("__was").is_null()
    for name in compared:
        changed = changed | pl.col(name).ne_missing(pl.col(f"{name}__old"))
    write = joined.filter(changed).select(new.columns)
    gone = old.join(new.select(KEY), on=KEY, how="anti").select(KEY)
    return write, gone


# ---------------------------------------------------------------------------------------- writing Redis
def write_rows(client: Any, prefix: str, table: str, frame: Any, features: list[str], ttl_s: int | None, batch_rows: int) -> int:
    """HSET each row's non-null features and `_ts:<table>`, HDEL its null ones; pipelined batches."""
    fields = [feature_field(table, f) for f in features]
    ts_name = ts_field(table)
    keys = [prefix + k[1:] for k in frame.get_column(KEY).to_list()]
    values = [frame.get_column(f).to_list() for f in features]
    stamps = frame.get_column(TS).to_list()
    written = 0
    for start in range(0, len(keys), batch_rows):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + batch_rows, len(keys))):
            mapping = {ts_name: stamps[i]}
            nulls = []
            for name, column in zip(fields, values, strict=True):
                value = column[i]
                if value is None:
                    nulls.append(name)
                else:
                    mapping[name] = value
            pipe.hset(keys[i], mapping=mapping)
            if nulls:
                pipe.hdel(keys[i], *nulls)
            if ttl_s:
                pipe.expire(keys[i], ttl_s)
            written += 1
        pipe.execute()
    return written


def delete_fields(client: Any, prefix: str, table: str, keys: list[str], batch_rows: int) -> int:
    """Remove this table's fields from each key (other tables' fields on a shared entity hash stay)."""
    done = 0
    own = (f"{table}:", ts_field(table))
    for start in range(0, len(keys), batch_rows):
        chunk = keys[start:start + batch_rows]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.hkeys(key)
        names = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for key, fields in zip(chunk, names, strict=True):
            mine = [f for f in fields if (f.decode() if isinstance(f, bytes) else f).startswith(own)]
            if mine:
                pipe.hdel(key, *mine)
                done += 1
        pipe.execute()
    return done


def keys_of_table(client: Any, prefix: str, table: str) -> list[str]:
    """Every entity key holding this table's timestamp field (SCAN: only after a crash or a layout change)."""
    found = []
    ts_name = ts_field(table)
    meta_prefix = f"{prefix}:_specd:"
    batch: list[str] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.hexists(key, ts_name)
        found.extend(k for k, present in zip(batch, pipe.execute(), strict=True) if present)
        batch.clear()

    for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        if key.startswith(meta_prefix):
            continue
        batch.append(key)
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    return found


def refresh_ttl(client: Any, prefix: str, keys: list[str], ttl_s: int, batch_rows: int) -> int:
    for start in range(0, len(keys), batch_rows):
        pipe = client.pipeline(transaction=False)
        for key in keys[start:start + batch_rows]:
            pipe.expire(key, ttl_s)
        pipe.execute()
    return len(keys)


# ---------------------------------------------------------------------------------------- the action
def plan_frames(job: Job, meta: dict[str, str], version: int) -> dict[str, Any]:
    """Read what a materialisation of `version` needs: the new frame, and the old one when a diff is
    possible (the store completed an earlier version with the same layout, no pending marker)."""
    from flows.tables.delta_log import read_table_log

    table = _open(job.uri, version, job.storage_options)
    columns = [f.name for f in table.schema().fields]
    features = resolve_features(job, columns)
    log = read_table_log(job.uri, job.storage_options)
    commit_ts = next((c.timestamp_ms for c in (log.commits if log else ()) if c.version == version), 0) / 1000
    new, dtypes = latest_rows(table, job, features, commit_ts)
    layout = json.dumps({"keys": sorted_keys(job.keys), "features": features, "timestamp": job.timestamp}, sort_keys=True)
    old = None
    from_version = None
    if meta.get(M_VERSION) and meta.get(M_LAYOUT) == layout and not meta.get(M_PENDING_VERSION):
        from_version = int(meta[M_VERSION])
        if from_version == version:
            old = new
        else:
            try:
                earlier = _open(job.uri, from_version, job.storage_options)
                old_ts = next((c.timestamp_ms for c in (log.commits if log else ()) if c.version == from_version), 0) / 1000
                old, _ = latest_rows(earlier, job, features, old_ts if job.timestamp else commit_ts)
            except Exception:  # vacuumed or unreadable: fall back to a full rewrite
                old, from_version = None, None
    return {"table": table, "features": features, "new": new, "old": old, "layout": layout,
            "from_version": from_version, "dtypes": dtypes}


def preview(job: Job, meta: dict[str, str], version: int) -> dict[str, int]:
    """What materialising `version` would do (+added, ~changed, -removed keys), without writing."""
    frames = plan_frames(job, meta, version)
    new, old = frames["new"], frames["old"]
    if old is None:
        return {"added": new.height, "changed": 0, "removed": 0, "full": 1}
    write, gone = diff(new, old, frames["features"], bool(job.timestamp))
    present = set(old.get_column(KEY).to_list())
    added = sum(1 for k in write.get_column(KEY).to_list() if k not in present)
    return {"added": added, "changed": write.height - added, "removed": gone.height, "full": 0}


def materialize(client: Any, prefix: str, job: Job, version: int, *, data_id: str = "", batch_rows: int = 2000) -> Result:
    started = time.perf_counter()
    meta_name = meta_key(prefix, job.table)
    meta = read_meta(client, prefix, job.table)
    frames = plan_frames(job, meta, version)
    new, old, features = frames["new"], frames["old"], frames["features"]
    result = Result(job.table, version, "diff", from_version=frames["from_version"])
    ttl = job.ttl_s
    if old is not None and frames["from_version"] == version and meta.get(M_FINGERPRINT) == job.fingerprint:
        result.mode = "noop"
        result.unchanged = result.keys = new.height
        if ttl:  # a TTL refresh: the store keeps this version ttl_s longer, no value is written
            result.ttl_refreshed = refresh_ttl(client, prefix, [prefix + k[1:] for k in new.get_column(KEY).to_list()], ttl, batch_rows)
            client.expire(meta_name, ttl)
        result.seconds = time.perf_counter() - started
        return result
    client.hset(meta_name, mapping={M_PENDING_VERSION: str(version), M_PENDING_FINGERPRINT: job.fingerprint})
    client.sadd(tables_key(prefix), job.table)
    if old is None:
        result.mode = "full"
        write = new
        wanted = {prefix + k[1:] for k in new.get_column(KEY).to_list()}
        gone_keys = [k for k in keys_of_table(client, prefix, job.table) if k not in wanted]
    else:
        write, gone = diff(new, old, features, bool(job.timestamp))
        gone_keys = [prefix + k[1:] for k in gone.get_column(KEY).to_list()]
    result.written = write_rows(client, prefix, job.table, write, features, ttl, batch_rows)
    result.deleted = delete_fields(client, prefix, job.table, gone_keys, batch_rows)
    result.keys = new.height
    result.unchanged = new.height - result.written
    if ttl and result.mode == "diff" and result.unchanged:
        written = set(write.get_column(KEY).to_list())
        rest = [prefix + k[1:] for k in new.get_column(KEY).to_list() if k not in written]
        result.ttl_refreshed = refresh_ttl(client, prefix, rest, ttl, batch_rows)
    pipe = client.pipeline(transaction=True)
    pipe.hset(meta_name, mapping={
        M_VERSION: str(version), M_FINGERPRINT: job.fingerprint, M_DATA_ID: data_id, M_LAYOUT: frames["layout"],
        M_SCHEMA: json.dumps(frames["dtypes"], sort_keys=True), M_KEYS: str(new.height), M_TTL: str(ttl or ""),
        M_PRUNE: "" if job.prune is None else str(job.prune).lower(), M_COMPLETED: repr(time.time()),
    })
    pipe.hdel(meta_name, M_PENDING_VERSION, M_PENDING_FINGERPRINT)
    if ttl:
        pipe.expire(meta_name, ttl)
    else:
        pipe.persist(meta_name)
    pipe.execute()
    result.seconds = time.perf_counter() - started
    return result


def remove_table(client: Any, prefix: str, table: str, batch_rows: int = 2000) -> int:
    """Delete every field of `table` from the store, then its meta (a prune of `online/<table>`)."""
    meta_name = meta_key(prefix, table)
    client.hset(meta_name, M_PENDING_VERSION, "delete")
    removed = delete_fields(client, prefix, table, keys_of_table(client, prefix, table), batch_rows)
    pipe = client.pipeline(transaction=True)
    pipe.delete(meta_name)
    pipe.srem(tables_key(prefix), table)
    pipe.execute()
    return removed


def main() -> int:
    """`python -m flows.online.materialize`: {"store": {...}, "job": {...}, "version": N, "data_id": ".."}."""
    from flows.online.store import connect

    request = json.loads(sys.stdin.read())
    store = request["store"]
    client = connect(store, timeout_s=max(float(store.get("timeout_s") or 1.0), 10.0))
    if request.get("delete"):
        removed = remove_table(client, store["prefix"], request["job"]["table"], int(store.get("batch_rows") or 2000))
        print(json.dumps({"deleted": removed}))
        return 0
    result = materialize(client, store["prefix"], Job(**request["job"]), int(request["version"]),
                         data_id=request.get("data_id", ""), batch_rows=int(store.get("batch_rows") or 2000))
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
