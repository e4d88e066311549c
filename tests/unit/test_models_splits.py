"""Group- and time-based splits (and their CV folds) on small synthetic Delta tables.

The promises under test: a group is never on both sides (holdout or any CV fold); a time-based holdout
is strictly later than every training row, ties included; time folds only validate on rows later than
those they were fitted on; the same seed gives the same split.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from flows.training.data import make_split, read_table


def _delta(path: Path, columns: dict) -> object:
    import pyarrow as pa
    from deltalake import write_deltalake

    write_deltalake(str(path), pa.table(columns), mode="overwrite")
    return read_table(str(path), 0, list(columns))


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> object:
    rng = np.random.default_rng(3)
    rows = 240
    customers = [f"c{int(i):02d}" if i < 30 else None for i in rng.integers(0, 32, size=rows)]  # some null groups
    days = rng.integers(0, 12, size=rows)  # many ties per day
    start = dt.date(2024, 1, 1)
    return _delta(tmp_path_factory.mktemp("split") / "events", {
        "customer": customers,
        "day": [start + dt.timedelta(days=int(d)) for d in days],
        "tick": [None if i % 17 == 0 else float(d) for i, d in enumerate(days)],  # a numeric time with nulls
        "x": rng.normal(size=rows),
    })


def _keys(frame, column: str, rows: np.ndarray) -> set:
    return {frame[column][int(i)] for i in rows}


def test_group_split_keeps_each_group_on_one_side(table) -> None:
    split = make_split(table, {"by": "group", "column": "customer", "holdout": 0.25, "seed": 5, "folds": 4})
    assert not _keys(table, "customer", split.train) & _keys(table, "customer", split.holdout)
    assert np.union1d(split.train, split.holdout).size == table.height and np.intersect1d(split.train, split.holdout).size == 0
    assert 0.15 <= split.holdout.size / table.height <= 0.45
    assert len(split.folds) == 4
    validated = []
    for fit, validate in split.folds:
        assert not _keys(table, "customer", fit) & _keys(table, "customer", validate)
        assert np.union1d(fit, validate).tolist() == split.train.tolist()
        validated.append(validate)
    assert np.sort(np.concatenate(validated)).tolist() == split.train.tolist()  # every training row validated once
    again = make_split(table, {"by": "group", "column": "customer", "holdout": 0.25, "seed": 5, "folds": 4})
    assert again.holdout.tolist() == split.holdout.tolist()
    other = make_split(table, {"by": "group", "column": "customer", "holdout": 0.25, "seed": 6})
    assert other.holdout.tolist() != split.holdout.tolist()


def test_time_split_holds_out_strictly_later_rows(table) -> None:
    split = make_split(table, {"by": "time", "column": "day", "holdout": 0.3, "seed": 0, "folds": 3})
    days = table["day"].to_list()
    assert min(days[i] for i in split.holdout) > max(days[i] for i in split.train)  # ties never straddle the cut
    assert np.union1d(split.train, split.holdout).size == table.height
    assert 0.2 <= split.holdout.size / table.height <= 0.45
    for fit, validate in split.folds:  # walk forward: validate only on days after every fitted day
        assert fit.size and validate.size
        assert min(days[i] for i in validate) > max(days[i] for i in fit)
        assert set(fit.tolist()) | set(validate.tolist()) <= set(split.train.tolist())


def test_time_split_leaves_rows_without_a_time_out(table) -> None:
    split = make_split(table, {"by": "time", "column": "tick", "holdout": 0.2})
    ticks = table["tick"].to_list()
    used = set(split.train.tolist()) | set(split.holdout.tolist())
    assert used == {i for i, t in enumerate(ticks) if t is not None}
    assert min(ticks[i] for i in split.holdout) > max(ticks[i] for i in split.train)


def test_splits_that_cannot_keep_their_promise_fail_clearly(tmp_path: Path) -> None:
    frame = _delta(tmp_path / "t", {"g": ["a", "a", "b", "b"], "t": [1, 1, 1, 1]})
    with pytest.raises(ValueError, match="two distinct times"):
        make_split(frame, {"by": "time", "column": "t"})
    with pytest.raises(ValueError, match="needs ≥ 3 groups"):
        make_split(frame, {"by": "group", "column": "g", "folds": 3})


def test_random_split_and_folds_partition_the_rows(table) -> None:
    split = make_split(table, {"holdout": 0.2, "seed": 1, "folds": 3})
    assert split.holdout.size == round(table.height * 0.2)
    assert np.union1d(split.train, split.holdout).size == table.height
    assert np.sort(np.concatenate([v for _, v in split.folds])).tolist() == split.train.tolist()


def test_row_order_of_a_rebuild_does_not_change_the_split(tmp_path):
    """Two builds of the same data may store rows in different orders; the split must not care."""
    import numpy as np
    import pyarrow as pa
    from deltalake import write_deltalake

    from flows.training.data import make_split, read_table

    rng = np.random.default_rng(0)
    ids = np.arange(200)
    values = rng.normal(size=200)
    forward = pa.table({"id": ids, "x": values})
    shuffled = forward.take(rng.permutation(200))
    write_deltalake(str(tmp_path / "a"), forward)
    write_deltalake(str(tmp_path / "b"), shuffled)
    splits = []
    for name in ("a", "b"):
        frame = read_table(str(tmp_path / name), None, ["id", "x"])
        split = make_split(frame, {"holdout": 0.25, "seed": 3})
        splits.append(sorted(frame["id"].to_numpy()[split.holdout].tolist()))
    assert splits[0] == splits[1]
