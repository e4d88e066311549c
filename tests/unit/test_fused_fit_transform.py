"""The fused fit + transform of the training rows equals `preprocess.fit` then `preprocess.transform`,
state and bytes, on every kind of column and option, on one thread and on several."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from flows.training import data as datapath
from flows.training import fused, preprocess


def mixed(rows: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    with_nan = rng.normal(size=rows)
    with_nan[rng.random(rows) < 0.05] = np.nan
    with_inf = rng.normal(size=rows)
    with_inf[min(3, rows - 1)] = np.inf
    zeros_middle = np.concatenate([np.zeros(rows // 2), rng.normal(size=rows - rows // 2)])
    nulls = pl.Series("nulls", rng.normal(size=rows)).scatter(list(range(0, rows, 11)), None)
    return pl.DataFrame({
        "a": rng.normal(size=rows) * 100 + 7, "b": rng.gamma(2.0, 1.0, rows), "n": with_nan, "inf": with_inf,
        "z": zeros_middle, "i": rng.integers(-5, 1000, rows), "f32": rng.normal(size=rows).astype(np.float32),
        "const": np.full(rows, 2.5), "s": rng.choice(["x", "y", "z"], rows), "nulls": nulls,
    })


SCHEMA = {"a": "float64", "b": "float64", "n": "float64", "inf": "float64", "z": "float64", "i": "int64",
          "f32": "float64", "const": "float64", "s": "string", "nulls": "float64"}


def options(impute: str, scale: str) -> dict[str, dict[str, str]]:
    out = {name: {"impute": impute, "scale": scale} for name in SCHEMA}
    out["s"] = {"impute": "most_frequent", "encode": "onehot"}
    return out


def both(table: datapath.Table, rows: np.ndarray, opts: dict) -> tuple[tuple, tuple]:
    reference_columns = datapath.columns_at(table, list(SCHEMA), rows)
    state = preprocess.fit(reference_columns, SCHEMA, opts)
    reference = (state, preprocess.transform(state, reference_columns).tobytes())
    got_state, matrix = fused.fit_transform(datapath.columns_at(table, list(SCHEMA), rows), SCHEMA, opts)
    assert matrix.flags.c_contiguous and matrix.dtype == np.float32
    # the fitted state applied to other rows (a holdout, in another order), by both transforms
    other = np.random.default_rng(rows.size).permutation(table.height)[: max(1, table.height // 3)]
    expected = preprocess.transform(state, datapath.columns_at(table, list(SCHEMA), other))
    assert fused.transform(state, datapath.columns_at(table, list(SCHEMA), other)).tobytes() == expected.tobytes()
    return reference, (got_state, matrix.tobytes())


@pytest.mark.parametrize("tall", [False, True], ids=["in-cache", "two-pass"])
@pytest.mark.parametrize("threads", ["1", "2", "5"])
@pytest.mark.parametrize(("impute", "scale"), [("median", "standard"), ("mean", "minmax"), ("zero", "none"),
                                               ("none", "standard"), ("median", "robust")])
def test_fused_equals_fit_then_transform(threads: str, impute: str, scale: str, tall: bool, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    if tall:  # the two-pass gather of tall tables, with buckets small enough to be many here
        monkeypatch.setattr(datapath, "TALL_ROWS", 1000)
        monkeypatch.setattr(datapath, "BUCKET_SHIFT", 10)
    calls = []
    column_pass = fused._fit_transform_column
    monkeypatch.setattr(fused, "_fit_transform_column", lambda *args: calls.append(args[1]) or column_pass(*args))
    frame = pl.concat([mixed(30_000, 1), mixed(12_345, 2)], rechunk=False)  # two chunks per column
    table = datapath.canonical_table(frame)
    assert table.order is not None
    rng = np.random.default_rng(3)
    for rows in (np.arange(table.height), np.sort(rng.permutation(table.height)[:33_000]), rng.permutation(table.height)[:20_000]):
        reference, got = both(table, rows, options(impute, scale))
        assert got == reference
    # the columns without nulls took the compiled path (robust scaling is preprocess's alone)
    assert set(calls) == (set() if scale == "robust" else {"a", "b", "n", "inf", "z", "i", "f32", "const"})


def test_small_tables_single_rows_and_the_stored_order() -> None:
    for rows in (1, 2, 9, 200):
        table = datapath.Table(mixed(rows, rows), None)  # no order: every stored row, in order
        reference, got = both(table, np.arange(rows), options("median", "standard"))
        assert got == reference


def test_a_plain_mapping_and_an_unknown_option_take_preprocess_and_its_errors() -> None:
    table = datapath.Table(pl.DataFrame({"a": np.arange(10.0)}), None)
    state = preprocess.fit({"a": np.arange(10.0)}, {"a": "float64"}, {"a": {}})
    with pytest.raises(KeyError, match="missing feature column 'b'"):
        fused.transform({"columns": [{**state["columns"][0], "name": "b"}], "output_dim": 1}, datapath.columns_at(table, ["a"], np.arange(10)))
    columns = {"a": np.array([1.0, 2.0, 4.0])}
    state, matrix = fused.fit_transform(columns, {"a": "float64"}, {"a": {}})
    assert state == preprocess.fit(columns, {"a": "float64"}, {"a": {}})
    table = datapath.Table(pl.DataFrame({"a": np.arange(50_000, dtype=np.float64)}), None)
    with pytest.raises(ValueError, match="unknown scaling 'cubic'"):
        fused.fit_transform(datapath.columns_at(table, ["a"], np.arange(50_000)), {"a": "float64"}, {"a": {"scale": "cubic"}})


def test_a_wide_read_shared_out_over_threads_reads_one_version_like_a_single_read(tmp_path, monkeypatch) -> None:
    from deltalake import write_deltalake

    rng = np.random.default_rng(8)
    names = [f"c{i}" for i in range(21)]
    uri = str(tmp_path / "wide")
    for _ in range(2):  # two versions, two files in the second
        write_deltalake(uri, pl.DataFrame({n: rng.normal(size=3000) for n in names}).to_arrow(), mode="append")
    monkeypatch.setattr(datapath, "PARALLEL_READ_BYTES", 0)  # this small table is read in parts too
    reads = []
    real_read = pl.read_delta
    monkeypatch.setattr(pl, "read_delta", lambda *a, **k: reads.append(k) or real_read(*a, **k))
    for version in (0, None):
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        single = datapath.read_table(uri, version, names).to_frame()
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        reads.clear()
        shared = datapath.read_table(uri, version, names)
        assert len(reads) == 2 and {k["version"] for k in reads} == {0 if version == 0 else 1}  # one pinned snapshot
        assert shared.columns == names and shared.to_frame().equals(single)
        assert single.height == (3000 if version == 0 else 6000)


def test_a_small_table_is_read_at_once(tmp_path, monkeypatch) -> None:
    from deltalake import write_deltalake

    names = [f"c{i}" for i in range(12)]
    write_deltalake(str(tmp_path / "small"), pl.DataFrame({n: np.arange(500.0) for n in names}).to_arrow())
    reads = []
    real_read = pl.read_delta
    monkeypatch.setattr(pl, "read_delta", lambda *a, **k: reads.append(k) or real_read(*a, **k))
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    table = datapath.read_table(str(tmp_path / "small"), None, names)
    assert len(reads) == 1 and reads[0]["version"] == 0 and table.height == 500
