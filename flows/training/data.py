"""The data path: Delta (pinned version) → Polars/Arrow → deterministic split → columns → tensors.

Reads only the needed columns of exactly the Delta version recorded in the job, so a candidate can be
retrained bit-for-bit from its lineage. Splits are seeded and independent of the candidate, so every
candidate — and the re-scored champion — is evaluated on the same holdout rows. Group and time splits
keep their promise in the cross-validation folds too (a group never on both sides; validate only on
rows later than those fitted on), so CV spread is not flattered by leakage.

Canonical row order. Two builds of the same data may store rows in different orders (other file
layout, compaction, parallel writers) while the split and the shuffles work on positions; so the rows
are put in an order that depends on their contents only, and same data + same seed = same model. The
rule, cheapest first:

1. every column gets a uint64 *code* per value whose equality is value equality: the IEEE-754 bits of
   floats, the integer itself for integers, booleans and temporals (their physical value), the dense
   rank among the column's distinct values for strings, categoricals and decimals; nulls get code 0
   plus a separate null flag;
2. the codes of a row are folded into one 64-bit key, `h = (h ^ code) * odd constant` column by
   column (each step is a bijection of `h`, so rows that differ in a single column never collide), in
   numpy, vectorised over the rows — linear in rows × columns, where sorting by all columns was the
   single largest cost of loading a wide table;
3. rows are ordered by that key; rows whose keys collide (duplicates, or a true collision) are ordered
   among themselves by their codes, column by column, so the order stays a function of the contents
   even then (rows left tied are equal in every column, and their order cannot matter);
4. a table with a column of any other type (lists, structs, binary) falls back to sorting by all
   columns, as before.

The key is a pure function of the values and of numpy's wrapping uint64 arithmetic (no library hash
whose definition may change between versions); the order of `columns` passed to `read_table` is part
of it and is the job's own, deterministic order. Rows of a new version that were in the old one keep
their relative order (appends only interleave new rows), and a pinned version always loads into the
same bytes (tests/unit/test_loader_determinism.py).

Cost. The rows are never moved as a whole: `read_table` returns a `Table`, the stored columns plus the
permutation `order`, and a selection gathers through it once (`columns_at`, and for training
`flows.training.fused`, which gathers each numeric column into a cache-resident buffer and takes every
statistic from there). The key folds the column chunks as they were read (no rechunk), over row ranges
on the loader's threads (`flows.training.kernels`); only `Table.to_frame` copies every column into
canonical order, for callers that want one DataFrame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flows.training.schema import FLOAT_TYPES, INT_TYPES, STRING_TYPES, resolve_features, schema_type  # noqa: F401 - re-exported


def read_table(uri: str, version: int | None, columns: Sequence[str], storage_options: Mapping[str, str] | None = None) -> Table:
    """The pinned Delta version (only the needed columns), with its canonical row order.

    A read of a table of 16 MiB or more of files is shared out over the loader's threads, a set of columns
    each (polars decodes one file's columns on one thread): the parts read the same version, resolved
    first when none is pinned, so they are one snapshot even while a writer commits."""
    import polars as pl

    from flows.training import kernels

    names = list(dict.fromkeys(columns))
    options = dict(storage_options or {}) or None
    parts = max(1, min(kernels.loader_threads(), len(names) // COLUMNS_PER_READ))
    if parts > 1:
        from deltalake import DeltaTable

        snapshot = DeltaTable(uri, version=version, storage_options=options)
        version = snapshot.version()
        stored_bytes = sum(snapshot.get_add_actions(flatten=True).column("size_bytes").to_pylist())
        parts = 1 if stored_bytes < PARALLEL_READ_BYTES else parts
    if parts == 1:
        return canonical_table(pl.read_delta(uri, version=version, columns=names, storage_options=options))
    frames: list[Any] = [None] * parts

    def read_part(part: int) -> None:
        frames[part] = pl.read_delta(uri, version=version, columns=names[part::parts], storage_options=options)

    kernels.on_threads(read_part, range(parts))
    return canonical_table(pl.concat(frames, how="horizontal").select(names))


_UNSET = object()
TALL_ROWS = 300_000  # from here a float64 column outgrows a core's L2 cache: gather in two streaming passes
BUCKET_SHIFT = 16  # the two-pass gather's buckets: 65,536 output rows (512 KiB of float64)
COLUMNS_PER_READ = 2  # the fewest columns a read shares out to one thread
PARALLEL_READ_BYTES = 16 << 20  # a smaller table is read at once (each read costs a few ms of its own)


@dataclass(frozen=True, eq=False)
class Table:
    """A table's rows as stored, and the canonical order over them (module docstring).

    The rows are not moved when read: canonical position i is stored row `order[i]`, and a selection
    (`columns_at`, one column, a filter) gathers through it straight from the stored columns, once,
    instead of first copying every column into canonical order and then gathering again."""

    frame: Any  # polars DataFrame, rows as stored
    order: np.ndarray | None  # None: the stored rows are in canonical order already
    _series: dict[str, Any] = field(default_factory=dict, repr=False)
    _dense: dict[str, list[np.ndarray] | None] = field(default_factory=dict, repr=False)
    _types: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def height(self) -> int:
        return self.frame.height if self.order is None else int(self.order.size)

    @property
    def columns(self) -> list[str]:
        return self.frame.columns

    @property
    def schema(self) -> Any:
        return self.frame.schema

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """The stored rows at canonical positions `rows`."""
        return rows if self.order is None else self.order[rows]

    def __getitem__(self, name: str) -> Any:
        """One column in canonical order (a polars Series, gathered once)."""
        if name not in self._series:
            series = self.frame[name]
            self._series[name] = series if self.order is None else series.gather(self.order)
        return self._series[name]

    def numeric(self, name: str) -> bool:
        """Whether the column is read as a number (float64) rather than a string."""
        from flows.training.preprocess import NUMERIC_TYPES

        if not self._types:  # polars builds the schema anew on every access
            self._types.update((column, str(dtype)) for column, dtype in self.frame.schema.items())
        return schema_type(self._types[name]) in NUMERIC_TYPES

    def dense(self, name: str) -> list[np.ndarray] | None:
        """A numeric column without nulls as numpy views of its stored chunks (`_dense`), or None."""
        if name not in self._dense:
            self._dense[name] = _dense(self.frame[name])
        return self._dense[name]

    def filter(self, mask: Any) -> Table:
        """The rows where `mask` (a boolean Series or array in canonical order) is true, still in order."""
        keep = np.asarray(mask.to_numpy() if hasattr(mask, "to_numpy") else mask, dtype=bool)
        if keep.all():
            return self
        return Table(self.frame, self.positions(np.flatnonzero(keep)))

    def to_frame(self) -> Any:
        """The rows in canonical order as one DataFrame (a copy of every column)."""
        return self.frame if self.order is None else take_rows(self.frame, self.order, {n: self.dense(n) for n in self.columns})


def _multipliers(count: int) -> list[int]:
    """Odd 64-bit constants, one per folding step: the splitmix64 sequence from a fixed seed."""
    out, state, mask = [], 0x5EED_0F_5EC_D0_0DE, (1 << 64) - 1
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append((z ^ (z >> 31)) | 1)
    return out


def _value_codes(series: Any) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(uint64 code per value, null mask or None): equal codes ⇔ equal values. None: unsupported type."""
    import polars as pl

    dtype = series.dtype
    nulls = series.is_null().to_numpy() if series.null_count() else None
    if dtype.is_float():
        codes = series.cast(pl.Float64).to_numpy().view(np.uint64)
    elif dtype == pl.UInt64:
        codes = series.fill_null(0).to_numpy().astype(np.uint64, copy=False)
    elif dtype.is_integer() or dtype.is_temporal() or dtype == pl.Boolean:
        physical = series.to_physical() if dtype.is_temporal() else series
        codes = physical.cast(pl.Int64).fill_null(0).to_numpy().view(np.uint64)
    elif dtype in (pl.String, pl.Categorical, pl.Enum) or dtype.is_decimal():
        codes = series.cast(pl.String).rank("dense").fill_null(0).to_numpy().astype(np.uint64)
    else:
        return None
    if nulls is not None:
        codes = np.where(nulls, np.uint64(0), codes)
    return codes, nulls


def _row_codes(frame: Any) -> list[np.ndarray] | None:
    """The code columns of every column (plus a null-flag column where there are nulls)."""
    out = []
    for name in frame.columns:
        coded = _value_codes(frame[name])
        if coded is None:
            return None
        codes, nulls = coded
        out.append(codes)
        if nulls is not None:
            out.append(nulls.astype(np.uint64))
    return out


def _dense(series: Any) -> list[np.ndarray] | None:
    """A numeric column without nulls as numpy views of its chunks (no copy); None for any other column.
    Its values, gathered, are the column gathered."""
    import polars as pl

    if series.null_count() or series.dtype not in (pl.Float64, pl.Float32, pl.Int64, pl.Int32, pl.Int16, pl.Int8,
                                                   pl.UInt64, pl.UInt32, pl.UInt16, pl.UInt8):
        return None
    return [chunk.to_numpy() for chunk in series.get_chunks()] or None


def row_keys(frame: Any, dense: Mapping[str, list[np.ndarray] | None] | None = None) -> np.ndarray | None:
    """One uint64 key per row folded from its value codes (see the module docstring); None: unsupported.

    `dense` (from `_dense`, per column) lets a Float64 or Int64 column's codes be views of its chunks:
    the very bits `_value_codes` gives, without concatenating the chunks first. The folding steps run
    over row ranges on the loader's threads (each range folds every column in order)."""
    import polars as pl

    from flows.training import kernels

    constants = iter(_multipliers(2 * frame.width))
    steps: list[tuple[list[np.ndarray], np.uint64]] = []  # (the codes, chunk by chunk; the multiplier)
    schema = frame.schema  # built anew on every access
    for name in frame.columns:
        chunks = (dense or {}).get(name)
        if chunks is not None and schema[name] in (pl.Float64, pl.Int64):
            steps.append(([chunk.view(np.uint64) for chunk in chunks], np.uint64(next(constants))))
            next(constants)
            continue
        coded = _value_codes(frame[name])
        if coded is None:
            return None
        codes, nulls = coded
        steps.append(([codes], np.uint64(next(constants))))
        if nulls is not None:
            steps.append(([nulls.astype(np.uint64)], np.uint64(next(constants))))
        else:
            next(constants)
    keys = np.full(frame.height, 0x243F6A8885A308D3, dtype=np.uint64)

    def fold(bounds: tuple[int, int]) -> None:
        low, high = bounds
        for chunks, multiplier in steps:
            start = 0
            for chunk in chunks:
                stop = start + chunk.size
                if stop > low and start < high:
                    first, last = max(low, start), min(high, stop)
                    kernels.fold_keys(keys, first, chunk[first - start:last - start], multiplier)
                start = stop
    kernels.on_threads(fold, kernels.row_ranges(frame.height))
    return keys


def _key_order(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row indices in ascending key order, where adjacent sorted keys may be equal or out of order).

    One sort of plain uint64 values (numpy's SIMD sort, about 4× an argsort): each key's low bits are
    replaced by its row index, so the sorted values are the keys ordered by their high bits, ties by
    row. Adjacent rows with equal high bits are flagged; the caller orders those runs by the full key
    and the row's codes, so the result is the same as sorting by the full key first."""
    from flows.training import kernels

    bits = max(1, int(keys.size - 1).bit_length())
    packed = np.empty_like(keys)
    kernels.pack_rows(keys, bits, packed)
    packed.sort()
    order = np.empty(keys.size, dtype=np.int64)
    if kernels.unpack_rows(packed, bits, order) == 0:
        return order, np.zeros(max(0, keys.size - 1), dtype=bool)
    packed >>= np.uint64(bits)
    return order, packed[1:] == packed[:-1]


def canonical_permutation(frame: Any, dense: Mapping[str, list[np.ndarray] | None] | None = None) -> np.ndarray | None:
    """Row indices that put `frame` in canonical order (module docstring); None: a column type without
    codes (the caller sorts by all columns)."""
    keys = row_keys(frame, dense)
    if keys is None:
        return None
    order, same = _key_order(keys)
    if same.any():  # order colliding rows among themselves by their codes
        tied = np.flatnonzero(np.concatenate([same, [False]]) | np.concatenate([[False], same]))
        rows = order[tied]
        codes = _row_codes(frame[rows])
        assert codes is not None  # the same types row_keys accepted
        within = np.lexsort([*reversed(codes), keys[rows]])  # last key is primary: the row key first
        order[tied] = rows[within]
    return order


def take_rows(frame: Any, rows: np.ndarray, dense: Mapping[str, list[np.ndarray] | None] | None = None) -> Any:
    """`frame[rows]`: the numeric columns without nulls gathered by numpy into one block per dtype (each
    polars column a zero-copy view of a row of it), the others by polars.

    Each column is first copied in order into a scratch buffer that stays in cache, and gathered from
    there: the random reads then hit the cache instead of memory (about half the CPU time of gathering
    straight from the column)."""
    import polars as pl

    dense = dict(dense) if dense is not None else {name: _dense(frame[name]) for name in frame.columns}
    plain = [name for name in frame.columns if dense.get(name) is not None]
    rest = [name for name in frame.columns if dense.get(name) is None]
    taken = frame.select(rest)[rows] if rest else None
    gathered: dict[str, Any] = {}
    schema = frame.schema  # built anew on every access
    for dtype in dict.fromkeys(dense[name][0].dtype for name in plain):  # one block per numpy dtype
        names = [name for name in plain if dense[name][0].dtype == dtype]
        block = _block(len(names), rows.size, dtype)
        scratch = np.empty(frame.height, dtype=dtype)
        for row, name in zip(block, names, strict=True):
            np.concatenate(dense[name], out=scratch)
            np.take(scratch, rows, out=row, mode="clip")  # rows are in range; "raise" would buffer `out`
            gathered[name] = pl.Series(name, row, dtype=schema[name])
    return pl.DataFrame([gathered[name] if name in gathered else taken[name] for name in frame.columns])


def _block(count: int, length: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised (count, length) array in Arrow's memory pool, which keeps freed memory for the next
    load (numpy maps and unmaps an array this size, and every load pays its page faults again)."""
    import pyarrow as pa

    size = count * length * np.dtype(dtype).itemsize
    if size == 0:
        return np.empty((count, length), dtype=dtype)
    return np.frombuffer(pa.allocate_buffer(size), dtype=dtype).reshape(count, length)


def canonical_table(frame: Any) -> Table:
    """`frame` with the order of its rows that depends on their contents only (module docstring): a
    permutation over the stored rows, or — for a column type without codes — the frame sorted by all
    columns."""
    if frame.height < 2:
        return Table(frame, None)
    table = Table(frame, None)
    order = canonical_permutation(frame, {name: table.dense(name) for name in frame.columns})
    if order is None:
        return Table(frame.sort(frame.columns, nulls_last=True, maintain_order=True), None)
    return Table(frame, order, _dense=table._dense)


def canonical_order(frame: Any) -> Any:
    """The frame with its rows in canonical order, as one DataFrame."""
    return canonical_table(frame).to_frame()


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices
    holdout: np.ndarray
    folds: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # (fit, validate) indices within the train rows


NULL_GROUP = "\x00null"  # nulls form one group of their own (never equal to a real string value)


def _group_keys(frame: Any, column: str) -> np.ndarray:
    return np.array([NULL_GROUP if v is None else str(v) for v in frame[column].to_list()], dtype=object)


def _latest_times(times: np.ndarray, rows: np.ndarray, fraction: float) -> np.ndarray:
    """Rows (of `rows`) whose time is at or after a cutoff chosen so that about `fraction` of them are at or
    after it; never all of them. Ties never straddle the cutoff: every kept row is strictly later than every
    other row."""
    values, counts = np.unique(times[rows], return_counts=True)
    if values.size < 2:
        raise ValueError("a time-based split needs at least two distinct times")
    held, cut = 0, values.size
    while cut > 1 and held < rows.size * fraction:  # keep at least one time for training
        cut -= 1
        held += counts[cut]
    return rows[times[rows] >= values[cut]]


def _holdout(frame: Any, split: Mapping[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rows = frame.height
    fraction = float(split.get("holdout", 0.2))
    by = split.get("by", "random")
    if by == "random":
        order = rng.permutation(rows)
        cut = max(1, round(rows * fraction))
        return np.sort(order[cut:]), np.sort(order[:cut])
    if by == "group":
        keys = _group_keys(frame, split["column"])
        groups, counts = np.unique(keys.astype(str), return_counts=True)
        size = dict(zip(groups.tolist(), counts.tolist(), strict=True))
        chosen: list[str] = []
        held = 0
        for group in groups[rng.permutation(groups.size)].tolist()[:-1]:  # keep at least one group for training
            chosen.append(group)
            held += size[group]
            if held >= rows * fraction:
                break
        mask = np.isin(keys.astype(str), chosen)
        return np.flatnonzero(~mask), np.flatnonzero(mask)
    if by == "time":
        series = frame[split["column"]]
        present = np.flatnonzero(series.is_not_null().to_numpy())  # rows without a time belong to neither side
        times = series.to_numpy()
        holdout = _latest_times(times, present, fraction)
        return np.setdiff1d(present, holdout), np.sort(holdout)
    raise ValueError(f"unknown split {by!r}")


def _folds(frame: Any, split: Mapping[str, Any], train: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (fit, validate) pairs over the training rows, honouring the split kind: random folds; group folds
    (a group lies in one validation fold only); time folds walking forward (validate strictly after fit)."""
    by = split.get("by", "random")
    rng = np.random.default_rng(int(split.get("seed", 0)) + 1)
    if by == "random":
        parts = np.array_split(train[rng.permutation(train.size)], k)
        return [(np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i])), np.sort(parts[i])) for i in range(k)]
    if by == "group":
        keys = _group_keys(frame, split["column"]).astype(str)[train]
        groups, counts = np.unique(keys, return_counts=True)
        if groups.size < k:
            raise ValueError(f"{k}-fold cross-validation by group needs ≥ {k} groups in the training rows, found {groups.size}")
        order = rng.permutation(groups.size)
        order = order[np.argsort(-counts[order], kind="stable")]  # largest first, ties in seeded order
        fold_of, load = {}, np.zeros(k, dtype=np.int64)
        for index in order.tolist():  # each group to the lightest fold (balanced like scikit-learn's GroupKFold)
            target = int(np.argmin(load))
            fold_of[groups[index]] = target
            load[target] += counts[index]
        assignment = np.array([fold_of[key] for key in keys.tolist()])
        return [(np.sort(train[assignment != i]), np.sort(train[assignment == i])) for i in range(k)]
    times = frame[split["column"]].to_numpy()
    values = np.unique(times[train])
    if values.size < k + 1:
        raise ValueError(f"{k}-fold cross-validation by time needs ≥ {k + 1} distinct times in the training rows, found {values.size}")
    chunks = np.array_split(values, k + 1)  # fold i fits on chunks[0..i] and validates on chunk i+1
    folds = []
    for i in range(k):
        cutoff, end = chunks[i + 1][0], chunks[i + 1][-1]
        folds.append((np.sort(train[times[train] < cutoff]), np.sort(train[(times[train] >= cutoff) & (times[train] <= end)])))
    return folds


def make_split(frame: Any, split: Mapping[str, Any]) -> Split:
    """Seeded holdout — random, by group (no group on both sides) or by time (holdout strictly later than
    every training row; rows without a time are left out) — plus optional k folds over the training rows."""
    rng = np.random.default_rng(int(split.get("seed", 0)))
    train, holdout = _holdout(frame, split, rng)
    if train.size == 0 or holdout.size == 0:
        raise ValueError(f"split leaves {train.size} training and {holdout.size} holdout rows")
    k = int(split.get("folds", 0) or 0)
    folds = _folds(frame, split, train, k) if k >= 2 else []
    return Split(train, holdout, tuple(folds))


def columns_at(table: Any, names: Sequence[str], rows: np.ndarray) -> Columns:
    """Selected rows (canonical positions) of the named columns, as a `Columns` mapping."""
    if not isinstance(table, Table):
        table = Table(table, None)
    from flows.training import kernels

    rows = np.asarray(rows, dtype=np.int64)
    every_row = rows.size == table.height and kernels.is_identity(rows)  # every row, in canonical order
    if table.order is None:
        return Columns(table, list(names), None if every_row else rows)
    return Columns(table, list(names), table.order if every_row else table.order[rows])


class Columns(Mapping[str, Any]):
    """{name: ndarray (numeric, float64, NaN for nulls) | list (strings)} at selected rows, each column
    gathered from the stored rows when first read. `flows.training.fused` reads the numeric columns
    without nulls straight from `stored` and `positions`, without this copy."""

    def __init__(self, table: Table, names: list[str], positions: np.ndarray | None):
        self.table, self.names, self.positions = table, names, positions  # positions None: every stored row, in order
        self.rows = table.frame.height if positions is None else int(positions.size)
        self._gathered: dict[str, Any] = {}
        self._plan: Any = _UNSET

    def __getitem__(self, name: str) -> Any:
        if name not in self.names:
            raise KeyError(name)
        if name not in self._gathered:
            self._gathered[name] = self._gather(name)
        return self._gathered[name]

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __iter__(self) -> Any:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def scatter_plan(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(slot, dest) of the two-pass gather (`kernels.scatter_plan`) when the stored rows are too many
        for a column to stay in cache and the rows are selected through `positions`; else None."""
        if self._plan is _UNSET:
            plan = None
            if self.positions is not None and TALL_ROWS <= self.table.frame.height < 2**31:  # int32 slots
                from flows.training import kernels

                slot, dest, ok = kernels.scatter_plan(self.positions, self.table.frame.height, BUCKET_SHIFT)
                plan = (slot, dest) if ok else None
            self._plan = plan
        return self._plan

    def stored(self, name: str) -> list[np.ndarray] | None:
        """The stored chunks of a numeric column without nulls (numpy views), or None."""
        return self.table.dense(name) if self.table.numeric(name) else None

    def _gather(self, name: str) -> Any:
        series = self.table.frame[name]
        if self.table.numeric(name):
            values = series.cast(float).to_numpy()
            return values if self.positions is None else np.take(values, self.positions)
        return (series if self.positions is None else series.gather(self.positions)).cast(str).to_list()


def target_classes(frame: Any, target: str, task: str) -> list[Any] | None:
    if task == "regression":
        return None
    values = sorted(v for v in frame[target].unique().to_list() if v is not None)
    if task == "binary" and len(values) != 2:
        raise ValueError(f"binary target {target!r} has {len(values)} distinct values: {values[:10]}")
    if task == "multiclass" and len(values) < 2:
        raise ValueError(f"multiclass target {target!r} has fewer than 2 classes")
    return values
