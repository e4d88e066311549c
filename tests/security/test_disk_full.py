"""Disk full during a build: no partial files, "no space left on <path>", and the next apply succeeds.

The table's storage root is a real, small filesystem: a 2 MiB tmpfs mounted for the test (`mount -t
tmpfs -o size=2m`; the tests run as root in CI and in the sandbox). Nothing is intercepted: pyarrow's
Parquet writer and deltalake's commit hit a real ENOSPC. Cases: a first build that does not fit (the
table directory must not exist afterwards), and a rebuild of an existing table that does not fit (the
directory holds exactly the files of the committed version, which still reads back). Then the
filesystem is grown (`mount -o remount,size=…`) and the same apply succeeds. Without the privilege to
mount, the test is skipped with that reason (it cannot be shown honestly with a fake filesystem).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.cli.main import main
from tests.conftest import SpecRepo

pytestmark = pytest.mark.security

BIG_ROWS = 400_000  # ≈ 9 MiB of Parquet (random doubles and ints do not compress): cannot fit in 2 MiB
SPEC = """\
source:
  type: synthetic
  rows: {rows}
  seed: 7
  columns:
    - {{name: id, kind: sequence}}
    - {{name: a, kind: normal, mean: 0, std: 1}}
    - {{name: b, kind: normal, mean: 5, std: 2}}
    - {{name: c, kind: int, low: 1, high: 1000000000}}
"""


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "lake"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _apply(repo: SpecRepo, home: Path, lake: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["apply", "--no-prefect", "--repo", str(repo.path), "--home", str(home), "-o", f"env.storage.root={lake}"])
    return code, capsys.readouterr().err


def test_disk_full_leaves_nothing_and_the_next_apply_succeeds(spec_repo: SpecRepo, home: Path, small_fs: Path, capsys):
    from deltalake import DeltaTable

    from daemon.adapters.tables import workers

    try:
        # 1. a first build that cannot fit: nothing of the table remains
        spec_repo.write("specs/tables/big.yaml", SPEC.format(rows=BIG_ROWS))
        spec_repo.write("specs/tables/small.yaml", SPEC.format(rows=50))
        spec_repo.commit("two tables, one too big for the disk")
        code, err = _apply(spec_repo, home, small_fs, capsys)
        assert code == 1, err
        line = next(line for line in err.splitlines() if "table/big" in line and "FAILED" in line)
        assert f"no space left on {small_fs}/tables/big" in line, line
        assert "create table/small: ok" in err  # the other table is built
        assert not (small_fs / "tables" / "big").exists(), _files(small_fs)

        # 2. an existing table whose rebuild cannot fit: only the committed version's files remain
        spec_repo.write("specs/tables/big.yaml", SPEC.format(rows=100))
        spec_repo.commit("big made small")
        code, err = _apply(spec_repo, home, small_fs, capsys)
        assert code == 0, err
        before = _files(small_fs / "tables" / "big")
        spec_repo.write("specs/tables/big.yaml", SPEC.format(rows=BIG_ROWS))
        spec_repo.commit("big again")
        code, err = _apply(spec_repo, home, small_fs, capsys)
        assert code == 1 and f"no space left on {small_fs}/tables/big" in err, err
        assert _files(small_fs / "tables" / "big") == before
        assert DeltaTable(str(small_fs / "tables" / "big")).to_pyarrow_table().num_rows == 100
        assert shutil.disk_usage(small_fs).free > 1_500_000  # the space the failed build took is back

        # 3. space is back: the same apply succeeds
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_fs)], check=True)
        code, err = _apply(spec_repo, home, small_fs, capsys)
        assert code == 0, err
        assert DeltaTable(str(small_fs / "tables" / "big")).to_pyarrow_table().num_rows == BIG_ROWS
    finally:
        workers.shutdown()
        os.sync()


def test_disk_full_is_recognised_however_the_engine_words_it():
    import errno

    from flows.tables.partial import is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(RuntimeError("Generic LocalFileSystem error: Unable to write: No space left on device (os error 28)"))
    assert is_disk_full(OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device"))
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise ValueError("write failed") from inner
    except ValueError as outer:
        assert is_disk_full(outer)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(ValueError("space left on the left side"))


