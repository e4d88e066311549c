"""Family 2: paths and links stay in their roots. Escaping paths in specs, and symlinks in specs/,
presets, environments/ or under a file source's data root that resolve outside their root, are
validation errors; a commit that adds one is rejected by the git source like any invalid commit."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from tests.security.helpers import validate_errors

PATHS = [  # (source.path, expected)
    ("file:///etc/passwd", "source.path: Value error, file:// URIs are not allowed"),
    ("/etc/passwd", "source.path: Value error, '/etc/passwd' is absolute"),
    ("~/secrets.csv", "source.path: Value error, '~/secrets.csv' is absolute"),
    ("../../etc/passwd", "source.path: Value error, '../../etc/passwd' escapes its root"),
    ("specs/../../x.csv", "source.path: Value error, 'specs/../../x.csv' escapes its root"),
    ("*/../../../etc/*", "source.path: Value error, '*/../../../etc/*' escapes its root"),
    ("[.][.]/[.][.]/etc/passwd", "source.path: Value error, '[.][.]/[.][.]/etc/passwd': the glob component '[.][.]' could climb"),
    ("data/.?/x.csv", "source.path: Value error, 'data/.?/x.csv': the glob component '.?' could climb"),
    ("data/\x00x.csv", "source.path: Value error, path contains control characters"),
    ("ftp://host/x.csv", "source.path: Value error, URI scheme 'ftp' is not supported"),
]


def _table(path: str) -> str:
    return f"source:\n  type: file\n  path: {path!r}\n  format: csv\n".replace("'", '"')


@pytest.mark.parametrize(("path", "expected"), PATHS, ids=[p for p, _ in PATHS])
def test_escaping_paths_are_validation_errors(spec_repo, tmp_path, path, expected):
    spec_repo.write("specs/tables/t.yaml", f"source:\n  type: file\n  path: {path!r}\n  format: csv\n" if "\x00" not in path
                    else 'source:\n  type: file\n  path: "data/\\0x.csv"\n  format: csv\n')
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert any(e.startswith("specs/tables/t.yaml:3: ") and expected in e for e in errors), errors


LINKS = [  # (link path, target, expected)
    ("specs/tables/evil.yaml", "/etc/passwd", "specs/tables/evil.yaml: symlink to '/etc/passwd' resolves outside specs/"),
    ("specs/presets/evil.yaml", "../../../../../etc/passwd", "specs/presets/evil.yaml: symlink to '../../../../../etc/passwd' resolves outside specs/"),
    ("specs/tables/readme.yaml", "../../README.md", "specs/tables/readme.yaml: symlink to '../../README.md' resolves outside specs/"),
    ("specs/data", "/etc", "specs/data: symlink to '/etc' resolves outside specs/"),
    ("specs/tables/dangling.yaml", "nowhere.yaml", "specs/tables/dangling.yaml: symlink to 'nowhere.yaml' does not resolve (dangling)"),
    ("environments/evil.yaml", "/etc/passwd", "environments/evil.yaml: symlink to '/etc/passwd' resolves outside environments/"),
]


@pytest.mark.parametrize(("link", "target", "expected"), LINKS, ids=[f"{a}->{b}" for a, b, _ in LINKS])
def test_escaping_symlinks_are_validation_errors(spec_repo, tmp_path, link, target, expected):
    spec_repo.write("specs/tables/ok.yaml", "source:\n  type: file\n  path: specs/ok.csv\n  format: csv\n")
    path = spec_repo.path / link
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert expected in errors, errors


def test_symlink_inside_specs_is_fine(spec_repo, tmp_path):
    spec_repo.write("specs/tables/ok.yaml", "source:\n  type: file\n  path: specs/data/ok.csv\n  format: csv\n")
    spec_repo.write("specs/data/ok.csv", "a\n1\n")
    os.symlink("ok.yaml", spec_repo.path / "specs/tables/alias.yaml")
    assert validate_errors(spec_repo.path, tmp_path / "home") == []


def test_data_file_symlink_outside_data_root_is_a_validation_error(spec_repo, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text("secret\nhunter2\n")
    (spec_repo.path / "data").mkdir()
    os.symlink(outside, spec_repo.path / "data" / "leak.csv")
    spec_repo.write("specs/tables/t.yaml", "source:\n  type: file\n  path: data/*.csv\n  format: csv\n")
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert errors == ["specs/tables/t.yaml:3: source.path: 'data/*.csv' matches 'data/leak.csv', which resolves outside the data root"], errors


def test_git_checkout_leaves_escaping_links_out_and_the_commit_is_rejected(spec_repo, tmp_path):
    from daemon.runtime.reconcile import load_desired
    from daemon.runtime.source import GitSource
    from daemon.shared.errors import SpecErrors

    spec_repo.write("specs/tables/ok.yaml", "source:\n  type: file\n  path: specs/ok.csv\n  format: csv\n")
    os.symlink("/etc/passwd", spec_repo.path / "specs/tables/abs.yaml")
    os.symlink("../../../../../../etc/shadow", spec_repo.path / "specs/tables/climb.yaml")
    sha = spec_repo.commit("hostile links")
    home = tmp_path / "home"
    source = GitSource(str(spec_repo.path), "main", home)
    checkout = source.checkout(sha)  # no exception: the links are left out and recorded
    assert not (checkout / "specs/tables/abs.yaml").exists() and not (checkout / "specs/tables/abs.yaml").is_symlink()
    with pytest.raises(SpecErrors) as info:
        load_desired(checkout, "dev", sha)
    messages = [str(i) for i in info.value.issues]
    assert any(m.startswith("specs/tables/abs.yaml: symlink to '/etc/passwd' not allowed") for m in messages), messages
    assert any(m.startswith("specs/tables/climb.yaml: symlink to '../../../../../../etc/shadow' not allowed") for m in messages), messages
    assert all(not p.is_symlink() for p in checkout.rglob("*"))


def test_a_committed_marker_file_cannot_hide_links(spec_repo, tmp_path):
    from daemon.runtime.source import GitSource

    spec_repo.write(".specd-unsafe-links.json", "[]")
    spec_repo.write("specs/tables/ok.yaml", "source:\n  type: file\n  path: specs/ok.csv\n  format: csv\n")
    sha = spec_repo.commit("marker")
    checkout = GitSource(str(spec_repo.path), "main", tmp_path / "home").checkout(sha)
    assert not (checkout / ".specd-unsafe-links.json").exists()


def test_tar_members_with_absolute_names_are_not_extracted(tmp_path):
    """The checkout filter keeps tarfile's `data` rules for files too (no absolute or climbing names)."""
    assert tarfile.data_filter  # the stdlib filter the checkout builds on
    member = tarfile.TarInfo("../../escape.txt")
    with pytest.raises(tarfile.FilterError):
        tarfile.data_filter(member, str(tmp_path))
    assert not Path(tmp_path.parent.parent / "escape.txt").exists()


def test_sqlite_database_symlinked_out_of_the_data_root_is_a_validation_error(spec_repo, tmp_path):
    outside = tmp_path / "outside.db"
    outside.write_bytes(b"")
    (spec_repo.path / "data").mkdir()
    os.symlink(outside, spec_repo.path / "data" / "shop.db")
    spec_repo.write("specs/tables/t.yaml", "source:\n  type: sql\n  url: sqlite:///data/shop.db\n  query: SELECT 1 AS a\n")
    errors = validate_errors(spec_repo.path, tmp_path / "home")
    assert errors == ["specs/tables/t.yaml:3: source.url: SQLite database 'data/shop.db' resolves outside the data root"], errors
