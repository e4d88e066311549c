"""The faster loader keeps the old results and its determinism promise.

- canonical order: the numpy gather (chunk views, one block) gives the frame the previous polars path
  gave (kept verbatim below), for chunked frames and every supported column type;
- medians: the sample-bounded selection is exact (bit for bit `np.median`) on columns built to defeat
  the sample (sorted, periodic at the sampling stride, ties, NaNs, zeros, infinities);
- a pinned Delta version loads into the same bytes every time; appending rows makes a new version whose
  canonical order keeps the old rows in their old relative order, and the old version still loads as
  before.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from flows.training import data as datapath
from flows.training import preprocess


def previous_canonical_order(frame: pl.DataFrame) -> pl.DataFrame:
    """The implementation before the numpy gather, verbatim (rechunk, row keys, polars gather)."""
    if frame.height < 2:
        return frame
    frame = frame.rechunk()
    keys = datapath.row_keys(frame)
    if keys is None:
        return frame.sort(frame.columns, nulls_last=True, maintain_order=True)
    order = np.argsort(keys)
    ordered = keys[order]
    same = ordered[1:] == ordered[:-1]
    if same.any():
        tied = np.flatnonzero(np.concatenate([same, [False]]) | np.concatenate([[False], same]))
        rows = order[tied]
        codes = datapath._row_codes(frame[rows])
        within = np.lexsort([*reversed(codes), keys[rows]])
        order[tied] = rows[within]
    return frame[order]


def chunked_frame(rows: int, seed: int) -> pl.DataFrame:
    """Numeric columns of every width (some with nulls), strings, booleans; three chunks; duplicate rows."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(3):
        n = rows // 3
        parts.append(pl.DataFrame({
            "f64": rng.normal(size=n),
            "f32": rng.normal(size=n).astype(np.float32),
            "i64": rng.integers(-5, 5, n),
            "i32": rng.integers(-9, 9, n).astype(np.int32),
            "u8": rng.integers(0, 3, n).astype(np.uint8),
            "nullable": pl.Series([None if i % 7 == 0 else float(i % 4) for i in range(n)], dtype=pl.Float64),
            "s": [f"v{int(v)}" for v in rng.integers(0, 4, n)],
            "b": rng.random(n) < 0.5,
            "nan": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        }))
    frame = pl.concat(parts, rechunk=False)
    return pl.concat([frame, frame.head(rows // 10)], rechunk=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_canonical_order_equals_the_previous_implementation(seed: int) -> None:
    frame = chunked_frame(3000, seed)
    assert frame.n_chunks() > 1
    dense = {name: datapath._dense(frame[name]) for name in frame.columns}
    assert dense["f64"] is not None and dense["nullable"] is None and dense["s"] is None
    assert np.array_equal(datapath.row_keys(frame, dense), datapath.row_keys(frame.rechunk()))
    ours = datapath.canonical_order(frame)
    assert ours.schema == frame.schema
    assert ours.equals(previous_canonical_order(frame), null_equal=True)
    shuffled = frame[np.random.default_rng(seed + 7).permutation(frame.height)]
    assert datapath.canonical_order(shuffled).equals(ours, null_equal=True)


def hard_columns(rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rows)
    index = np.arange(rows, dtype=np.float64)
    stride = max(4, rows // preprocess._SAMPLE)
    columns = {
        "normal": rng.normal(size=rows),
        "ascending": index,
        "descending": -index,
        "stride": np.where(np.arange(rows) % stride == 0, 1e6 + index, index),  # the sample sees only outliers
        "ties": rng.integers(0, 3, rows).astype(np.float64),
        "nans": np.where(rng.random(rows) < 0.4, np.nan, rng.normal(size=rows)),
        "mostly_nan": np.where(np.arange(rows) % 97 == 0, index, np.nan),
        "zeros": np.where(rng.random(rows) < 0.5, 0.0, -0.0) * (rng.random(rows) < 0.9),
        "signed_zero_middle": np.concatenate([-np.ones(rows // 2), np.full(rows - rows // 2, -0.0)]),
        "infinite": np.where(rng.random(rows) < 0.3, np.inf, rng.normal(size=rows)),
        "constant": np.full(rows, 2.5),
    }
    columns["stride_desc"] = columns["stride"][::-1].copy()
    return columns


@pytest.mark.parametrize("rows", [20_000, 20_001, 70_001])
def test_sampled_medians_are_exact(rows: int) -> None:
    for name, values in hard_columns(rows).items():
        present = values[~np.isnan(values)]
        expected = np.float64(np.median(present)) if present.size else None
        got = preprocess.medians({name: values})[name]
        assert (got is None and expected is None) or np.float64(got).tobytes() == expected.tobytes(), name
        before = preprocess._medians_polars({name: values})[name]  # the previous implementation
        assert (got is None and before is None) or np.float64(got).tobytes() == np.float64(before).tobytes(), name
        if present.size:  # the fit takes the same path without NaNs
            state = preprocess._fit_numeric(present.copy(), "median", "none")
            assert np.float64(state["impute"]).tobytes() == expected.tobytes(), name


@pytest.mark.parametrize("impute", ["median", "mean", "zero", "none"])
@pytest.mark.parametrize("scale", ["standard", "minmax", "robust", "none"])
def test_fit_equals_numpy_on_large_columns(impute: str, scale: str) -> None:
    """The fit's shortcuts (the mean as NaN probe, std from that mean, sampled median) on columns long
    enough to take them, against the plain numpy definitions."""
    for name, values in hard_columns(20_000).items():
        present = values[~np.isnan(values)]
        with np.errstate(invalid="ignore", over="ignore"):
            fill = {"median": np.median(present) if present.size else 0.0, "mean": present.mean() if present.size else 0.0,
                    "zero": 0.0, "none": None}[impute]
            filled = np.where(np.isnan(values), np.nan if fill is None else fill, values)
            filled = filled[~np.isnan(filled)]
            center, spread = 0.0, 1.0
            if filled.size and scale == "standard":
                center, spread = filled.mean(), filled.std()
            elif filled.size and scale == "minmax":
                center, spread = filled.min(), filled.max() - filled.min()
            elif filled.size and scale == "robust":
                q1, center, q3 = np.percentile(filled, [25, 50, 75])
                spread = q3 - q1
            state = preprocess._fit_numeric(values, impute, scale)
        expected = {"impute": None if fill is None else float(fill), "center": float(center),
                    "scale": float(spread) if spread > 1e-12 else 1.0}
        got = {k: state[k] for k in expected}
        assert repr(got) == repr(expected), (name, got, expected)


def _load(uri: str, version: int, names: list[str]) -> tuple[pl.DataFrame, dict, np.ndarray]:
    """The canonical frame, and the fitted state and tensor of every row, by preprocess and by the fused
    path training takes (which must agree to the byte)."""
    from flows.training import fused

    table = datapath.read_table(uri, version, names)
    features = [n for n in names if n != "id"]
    schema, options = dict.fromkeys(features, "float64"), {n: {} for n in features}
    columns = datapath.columns_at(table, features, np.arange(table.height))
    state = preprocess.fit(columns, schema, options)
    tensor = preprocess.transform(state, columns)
    fused_state, fused_tensor = fused.fit_transform(datapath.columns_at(table, features, np.arange(table.height)), schema, options)
    assert fused_state == state and fused_tensor.tobytes() == tensor.tobytes()
    return table.to_frame(), state, tensor


def test_a_pinned_version_loads_into_the_same_bytes_and_appends_change_only_new_rows(tmp_path) -> None:
    from deltalake import write_deltalake

    rng = np.random.default_rng(11)
    def rows(start: int, count: int) -> pl.DataFrame:
        return pl.DataFrame({"id": np.arange(start, start + count), "a": rng.normal(size=count),
                             "b": np.where(rng.random(count) < 0.1, np.nan, rng.gamma(2.0, 1.0, count)),
                             "c": rng.integers(0, 4, count).astype(np.float64)})
    uri, names = str(tmp_path / "t"), ["id", "a", "b", "c"]
    first = rows(0, 30_000)
    write_deltalake(uri, first.to_arrow())
    frame0, state0, tensor0 = _load(uri, 0, names)
    again = _load(uri, 0, names)
    assert again[0].equals(frame0) and again[1] == state0 and again[2].tobytes() == tensor0.tobytes()

    write_deltalake(uri, rows(30_000, 5_000).to_arrow(), mode="append")
    assert _load(uri, 0, names)[2].tobytes() == tensor0.tobytes()  # the pinned version is unaffected
    frame1, state1, tensor1 = _load(uri, 1, names)
    assert frame1.height == 35_000 and tensor1.shape == (35_000, 3)
    old = frame1["id"].to_numpy() < 30_000
    assert frame1.filter(pl.Series(old)).equals(frame0)  # old rows keep their relative order
    assert state1 != state0  # statistics refitted on all rows of the new version ...
    columns = datapath.columns_at(frame1, ["a", "b", "c"], np.flatnonzero(old))
    assert preprocess.transform(state0, columns).tobytes() == tensor0.tobytes()  # ... old fit, old rows: old bytes

    rebuilt = str(tmp_path / "rebuilt")  # the same rows written anew, in another order, as one file
    write_deltalake(rebuilt, pl.concat([first, frame1.filter(pl.Series(~old))]).sample(fraction=1.0, shuffle=True, seed=3).to_arrow())
    assert _load(rebuilt, 0, names)[2].tobytes() == tensor1.tobytes()


def test_columns_at_applies_a_same_size_permutation():
    import numpy as np
    import polars as pl

    from flows.training.data import columns_at

    frame = pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "s": ["a", "b", "c", "d"]})
    rows = np.array([3, 2, 1, 0])
    picked = columns_at(frame, ["x", "s"], rows)
    assert picked["x"].tolist() == [4.0, 3.0, 2.0, 1.0] and picked["s"] == ["d", "c", "b", "a"]
    same = columns_at(frame, ["x"], np.arange(4))
    assert same["x"].tolist() == [1.0, 2.0, 3.0, 4.0]
