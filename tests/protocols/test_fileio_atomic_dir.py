"""``atomic_dir``: a folder of outputs appears whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocols.errors import InputError, OutputExistsError
from protocols.fileio import STALE_AFTER_S, atomic_dir, check_output_dir, temp_prefix


def test_the_folder_appears_only_when_the_block_ends(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with atomic_dir(out) as stage:
        assert stage.parent == tmp_path and stage.name.startswith(temp_prefix(out))
        (stage / "a.txt").write_text("a")
        assert not out.exists()
    assert [p.name for p in out.iterdir()] == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary left


def test_a_failure_leaves_the_old_folder_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_dir(out, force=True) as stage:
            (stage / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_force_replaces_a_folder_and_an_empty_one_needs_no_force(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()  # empty: nothing to lose
    with atomic_dir(out) as stage:
        (stage / "1.txt").write_text("1")
    with pytest.raises(OutputExistsError, match="--force"):
        check_output_dir(out)
    with atomic_dir(out, force=True) as stage:
        (stage / "2.txt").write_text("2")
    assert [p.name for p in out.iterdir()] == ["2.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the .old folder is gone


def test_a_file_in_the_way_and_a_missing_parent_are_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        check_output_dir(tmp_path / "file", force=True)
    with pytest.raises(InputError, match="does not exist"):
        check_output_dir(tmp_path / "no" / "run")


@pytest.mark.skipif(os.name == "nt", reason="pids are not checked on Windows")
def test_a_killed_runs_staging_folder_is_removed_by_the_next_write(tmp_path: Path) -> None:
    stale = tmp_path / ".run.999999999.abcdefgh.tmp"  # a gone pid
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"half")
    then = os.path.getmtime(stale) - STALE_AFTER_S - 60
    os.utime(stale, (then, then))
    with atomic_dir(tmp_path / "run") as stage:
        (stage / "a.txt").write_text("a")
    assert not stale.exists()
