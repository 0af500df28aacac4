"""Temporaries of atomic writes: named after their process, removed only when provably stale."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocols.errors import InputError
from protocols.fileio import (
    STALE_AFTER_S,
    atomic_path,
    check_writable,
    remove_stale_temporaries,
    temp_prefix,
)

pytestmark = pytest.mark.skipif(os.name == "nt", reason="pids are not checked on Windows")


def _gone_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def _make(path: Path, *, age_s: float, folder: bool = False) -> Path:
    if folder:
        path.mkdir()
        (path / "inside.bin").write_bytes(b"x")
    else:
        path.write_bytes(b"x")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_only_old_temporaries_of_gone_processes_of_this_target_are_removed(tmp_path: Path) -> None:
    target, dead, old = tmp_path / "m.pt", _gone_pid(), STALE_AFTER_S + 60
    stale_file = _make(tmp_path / f".m.pt.{dead}.abc_123.tmp", age_s=old)
    stale_dir = _make(tmp_path / f".m.pt.{dead}.k9x2.old", age_s=old, folder=True)
    kept = [
        _make(tmp_path / f".m.pt.{dead}.young123.tmp", age_s=10),  # its run may just have died
        _make(tmp_path / f".m.pt.{os.getpid()}.alive123.tmp", age_s=old),  # still being written
        _make(tmp_path / ".m.pt.nopid123.tmp", age_s=old),  # not ours to judge
        _make(tmp_path / f".m.pt.7.{dead}.other12.tmp", age_s=old),  # target 'm.pt.7'
        _make(tmp_path / f".m.pt.{dead}.abc.tmp.keep", age_s=old),
        _make(tmp_path / "m.pt", age_s=old),
    ]
    assert sorted(remove_stale_temporaries(target)) == sorted([stale_file, stale_dir])
    assert not stale_file.exists() and not stale_dir.exists()
    assert all(p.exists() for p in kept)


def test_atomic_path_names_its_temporary_after_the_process(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(temp_prefix(target))
        assert temp_prefix(target) == f".out.bin.{os.getpid()}."
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done" and not list(tmp_path.glob(".out.bin.*"))


def test_check_writable_refuses_a_folder_path_and_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ends with a path separator"):
        check_writable(f"{tmp_path / 'newdir'}{os.sep}")
    with pytest.raises(InputError, match="does not exist"):
        check_writable(tmp_path / "no" / "x.bin")
    assert not (tmp_path / "newdir").exists() and list(tmp_path.iterdir()) == []
