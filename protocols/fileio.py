"""Atomic file output: write to a temporary file in the target directory, then rename.

A crash or a bad input never leaves a half-written output behind, and existing outputs are not
overwritten unless ``force=True``.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_bytes(d / "x.bin", b"abc").name
    'x.bin'
    >>> (d / "x.bin").read_bytes()
    b'abc'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from protocols.errors import InputError, OutputExistsError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_writable", "read_input"]


def check_writable(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Validate that ``path`` can be written: parent exists and is a writable directory."""
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(f"output '{p}' exists; pass --force to overwrite")
    if p.exists() and p.is_dir():
        raise InputError(f"output '{p}' is a directory, expected a file path")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write '{p}': directory '{parent}' does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write '{p}': directory '{parent}' is not writable")
    return p


def _default_mode() -> int:
    """0o666 minus the process umask, as ``open()`` would create a file."""
    current = os.umask(0)
    os.umask(current)
    return 0o666 & ~current


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, force: bool = False, mode: int | None = None
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched. The file gets
    ``mode`` (e.g. ``0o600`` for secrets, kept from creation on) or the umask default.
    """
    target = check_writable(path, force=force)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    final_mode = _default_mode() if mode is None else mode
    try:
        os.chmod(tmp_path, final_mode if mode is not None else 0o600)
        yield tmp_path
        os.chmod(tmp_path, final_mode)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, force: bool = False, mode: int | None = None
) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, force=force, mode=mode) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, force: bool = False, mode: int | None = None
) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), force=force, mode=mode)


def read_input(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of an input file; a missing, directory or unreadable path is an
    :class:`~protocols.errors.InputError` naming ``what`` the file was meant to be."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} file '{p}' not found") from None
    except IsADirectoryError:
        raise InputError(f"{what} file '{p}' is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} file '{p}': {exc.strerror}") from None
