"""The fast loading path: a canonical row order that depends on contents only, and fit/transform that
give the numbers the straightforward implementation gave.

The reference fit/transform below are the previous implementations, kept verbatim (numpy medians,
float64 blocks concatenated then converted), so the faster code is held to identical bytes.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from flows.training import data as datapath
from flows.training import preprocess


# ---------------------------------------------------------------- canonical order
def mixed_frame(rows: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=rows)
    values[rng.random(rows) < 0.05] = np.nan
    frame = pl.DataFrame(
        {
            "x": values,
            "k": rng.integers(-3, 3, rows),
            "u": pl.Series(rng.integers(0, 2**63, rows, dtype=np.uint64) * 2, dtype=pl.UInt64),
            "s": [None if i % 11 == 0 else f"v{int(v)}é" for i, v in enumerate(rng.integers(0, 7, rows))],
            "b": rng.random(rows) < 0.5,
            "d": pl.Series(rng.integers(0, 5, rows)).cast(pl.Date),
            "f32": pl.Series(rng.normal(size=rows).astype(np.float32)),
        }
    )
    frame = frame.with_columns(pl.when(pl.col("k") == 0).then(None).otherwise(pl.col("k")).alias("k"))
    # exact duplicate rows and rows differing in one column only
    return pl.concat([frame, frame.head(rows // 10), frame.head(5).with_columns(pl.col("b").not_())])


def test_order_is_independent_of_storage_order_and_keeps_every_row() -> None:
    frame = mixed_frame(600, 0)
    rng = np.random.default_rng(1)
    reference = datapath.canonical_order(frame)
    def everything_sorted(f):
        return f.sort(f.columns, nulls_last=True)
    assert everything_sorted(reference).equals(everything_sorted(frame), null_equal=True)  # same rows, same counts
    for _ in range(4):
        shuffled = frame[rng.permutation(frame.height)]
        assert datapath.canonical_order(shuffled).equals(reference, null_equal=True)
    for name in frame.columns:  # rows that differ in one column only never share a key
        other = frame.head(50).with_columns(frame[name].head(50).shift(1).alias(name))
        differ = np.array([repr(a) != repr(b) for a, b in zip(frame.head(50).rows(), other.rows(), strict=True)])
        keys = datapath.row_keys(frame.head(50)), datapath.row_keys(other)
        assert np.all(keys[0][differ] != keys[1][differ])


def test_colliding_keys_are_ordered_by_contents(monkeypatch) -> None:
    """Force every key to collide: the codes alone must still give one order for every storage order."""
    monkeypatch.setattr(datapath, "_multipliers", lambda count: [0] * count)
    frame = mixed_frame(300, 2)
    assert np.unique(datapath.row_keys(frame)).size == 1
    reference = datapath.canonical_order(frame)
    rng = np.random.default_rng(3)
    for _ in range(3):
        assert datapath.canonical_order(frame[rng.permutation(frame.height)]).equals(reference, null_equal=True)


def test_unsupported_types_fall_back_to_a_full_sort() -> None:
    frame = pl.DataFrame({"l": [[2], [1], [1, 0]], "x": [1.0, 2.0, 3.0]})
    assert datapath.row_keys(frame) is None
    assert datapath.canonical_order(frame[[2, 0, 1]]).equals(datapath.canonical_order(frame))


def test_rebuilt_table_in_several_files_reads_in_the_same_order(tmp_path) -> None:
    from deltalake import write_deltalake

    frame = mixed_frame(400, 4).drop("u")  # deltalake has no uint64
    rng = np.random.default_rng(5)
    write_deltalake(str(tmp_path / "one"), frame.to_arrow())
    shuffled = frame[rng.permutation(frame.height)]
    for part in np.array_split(np.arange(shuffled.height), 3):  # three files, other row order
        write_deltalake(str(tmp_path / "three"), shuffled[part].to_arrow(), mode="append")
    one = datapath.read_table(str(tmp_path / "one"), None, frame.columns)
    three = datapath.read_table(str(tmp_path / "three"), None, frame.columns)
    assert one.to_frame().equals(three.to_frame(), null_equal=True)


# ---------------------------------------------------------------- fit / transform equal the previous code
def reference_fit_numeric(values: np.ndarray, impute: str, scale: str) -> dict:
    present = values[~np.isnan(values)]
    if impute == "none":
        fill = None
    elif present.size == 0:
        fill = 0.0
    elif impute == "mean":
        fill = float(present.mean())
    elif impute == "median":
        fill = float(np.median(present))
    else:
        fill = 0.0
    filled = np.where(np.isnan(values), fill if fill is not None else np.nan, values)
    filled = filled[~np.isnan(filled)]
    center, spread = 0.0, 1.0
    if filled.size and scale == "standard":
        center, spread = float(filled.mean()), float(filled.std())
    elif filled.size and scale == "minmax":
        center, spread = float(filled.min()), float(filled.max() - filled.min())
    elif filled.size and scale == "robust":
        q1, median, q3 = np.percentile(filled, [25, 50, 75])
        center, spread = float(median), float(q3 - q1)
    return {"impute": fill, "center": center, "scale": spread if spread > 1e-12 else 1.0, "width": 1}


def reference_transform(state: dict, columns: dict) -> np.ndarray:
    blocks = []
    for column in state["columns"]:
        raw = columns[column["name"]]
        if column["kind"] == "numeric":
            values = preprocess._numeric(raw)
            if column["impute"] is not None:
                values = np.where(np.isnan(values), column["impute"], values)
            block = ((values - column["center"]) / column["scale"])[:, None]
        else:
            values = [column["impute"] if v is None else v for v in preprocess._strings(raw)]
            categories = column["categories"]
            if column["encode"] == "onehot":
                index = {c: i for i, c in enumerate(categories)}
                block = np.zeros((len(values), len(categories)), dtype=np.float64)
                for row, value in enumerate(values):
                    if (position := index.get(value)) is not None:
                        block[row, position] = 1.0
            elif column["encode"] == "ordinal":
                index = {c: i + 1 for i, c in enumerate(categories)}
                block = np.array([index.get(v, 0) for v in values], dtype=np.float64)[:, None]
            else:
                block = np.array([column["frequency"].get(v, 0.0) for v in values], dtype=np.float64)[:, None]
        blocks.append(block)
    matrix = np.concatenate(blocks, axis=1).astype(np.float32)
    return np.nan_to_num(matrix, nan=0.0, posinf=0.0, neginf=0.0)


@pytest.mark.parametrize("rows", [1, 2, 3, 8, 9, 1000, 1001])
def test_medians_equal_numpy_bit_for_bit(rows: int) -> None:
    rng = np.random.default_rng(rows)
    columns = {
        "normal": rng.normal(size=rows),
        "ties": rng.integers(0, 3, rows).astype(np.float64),
        "nans": np.where(rng.random(rows) < 0.3, np.nan, rng.normal(size=rows) * 1e300),
        "extreme": np.array([np.inf, -np.inf, 1e308, -0.0, 0.0, 5e-324, 1.7e308][: min(rows, 7)] * rows)[:rows],
        "thirds": rng.integers(0, 10, rows) / 3.0,
        "empty": np.full(rows, np.nan),
    }
    got = preprocess.medians(columns)
    with np.errstate(invalid="ignore"):  # the median of [inf, -inf] is nan, for numpy too
        expected_all = {name: float(np.median(v[~np.isnan(v)])) if (~np.isnan(v)).any() else None for name, v in columns.items()}
    for name in columns:
        expected = expected_all[name]
        assert (got[name] is None and expected is None) or np.float64(got[name]).tobytes() == np.float64(expected).tobytes(), name


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_and_transform_equal_the_previous_implementation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = 2001
    columns = {
        "a": rng.normal(size=rows) * 1e3,
        "b": np.where(rng.random(rows) < 0.2, np.nan, rng.gamma(2.0, 3.0, rows)),
        "c": rng.integers(0, 5, rows).astype(np.float64),
        "d": np.where(rng.random(rows) < 0.5, np.nan, 1e39),  # overflows float32: becomes 0 like before
        "e": [None if i % 7 == 0 else f"cat{int(v)}" for i, v in enumerate(rng.integers(0, 9, rows))],
        "f": [f"x{int(v)}" for v in rng.integers(0, 4, rows)],
        "g": [None if i % 5 == 0 else f"y{int(v)}" for i, v in enumerate(rng.integers(0, 3, rows))],
    }
    schema = {"a": "float64", "b": "float64", "c": "int64", "d": "float64", "e": "string", "f": "string", "g": "string"}
    options = {
        "a": {"impute": "median", "scale": "standard"},
        "b": {"impute": "median", "scale": "robust"},
        "c": {"impute": "mean", "scale": "minmax"},
        "d": {"impute": "none", "scale": "standard"},
        "e": {"impute": "most_frequent", "encode": "onehot", "max_categories": 6},
        "f": {"impute": "constant", "encode": "ordinal"},
        "g": {"impute": "none", "encode": "frequency"},
    }
    state = preprocess.fit(columns, schema, options)
    for column in state["columns"]:
        if column["kind"] == "numeric":
            expected = reference_fit_numeric(np.asarray(columns[column["name"]], dtype=np.float64),
                                             options[column["name"]]["impute"], options[column["name"]]["scale"])
            assert {k: column[k] for k in expected} == expected, column["name"]
    matrix = preprocess.transform(state, columns)
    assert matrix.flags["C_CONTIGUOUS"] and matrix.dtype == np.float32
    assert matrix.tobytes() == reference_transform(state, columns).tobytes()
    subset = {k: (v[::3] if isinstance(v, np.ndarray) else v[::3]) for k, v in columns.items()}
    assert preprocess.transform(state, subset).tobytes() == reference_transform(state, subset).tobytes()
