"""Atomic output: write to a temporary file or folder next to the target, then rename.

A crash or a bad input never leaves a half-written output behind, and existing outputs are not
overwritten unless ``force=True``. A file goes through :func:`atomic_path`, a folder of files
through :func:`atomic_dir`; both name their temporaries with :func:`temp_prefix` and clear those
a killed process left (:func:`remove_stale_temporaries`).

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
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from protocols.errors import InputError, OutputExistsError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_JSON_BYTES",
    "MAX_KEY_BYTES",
    "STALE_AFTER_S",
    "atomic_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "check_writable",
    "probe_directory",
    "read_input",
    "regular_file",
    "remove_stale_temporaries",
    "sha256_file",
    "temp_prefix",
]

#: Size limits of :func:`read_input`. A PEM key is under 1 KiB; a signed commitment or result
#: is a few KiB. Anything else a caller does not bound itself (e.g. a watermark file, see
#: ``verification.watermark_file.MAX_FILE_BYTES``) gets the default.
MAX_KEY_BYTES = 64 * 1024
MAX_JSON_BYTES = 1024 * 1024
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024

#: A temporary left by a killed process is removed once it is this old (see
#: :func:`remove_stale_temporaries`).
STALE_AFTER_S = 3600.0
_SEPARATORS = tuple(s for s in (os.sep, os.altsep) if s)


def check_writable(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Validate that ``path`` can be written as a file, before any work is done.

    ``path`` must not end in a path separator (``newdir/`` names a folder, not a file), must not
    exist unless ``force``, and its directory must accept a new file (see
    :func:`probe_directory`).
    """
    raw = os.fspath(path)
    if raw.endswith(_SEPARATORS):
        raise InputError(
            f"output '{raw}' ends with a path separator; expected a file path, not a folder"
        )
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(f"output '{p}' exists; pass --force to overwrite")
    if p.exists() and p.is_dir():
        raise InputError(f"output '{p}' is a directory, expected a file path")
    probe_directory(p)
    return p


def probe_directory(path: str | os.PathLike[str]) -> Path:
    """Check that a new file can be created next to ``path`` by creating (and removing) one.

    ``os.access`` is not enough: it says yes for root under ``/proc``, on a read-only mount or
    where an ACL or quota refuses. Returns the directory.

    Raises:
        InputError: the directory does not exist, or refuses the new file (the OS reason).
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write '{p}': directory '{parent}' does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=temp_prefix(p), suffix=".tmp", dir=parent)
    except OSError as exc:
        raise InputError(
            f"cannot write '{p}': directory '{parent}' is not writable ({exc.strerror})"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return parent


def temp_prefix(target: str | os.PathLike[str]) -> str:
    """``.NAME.<pid>.``: how every temporary file or staging folder for ``target`` begins.

    The pid lets a later run tell a temporary left by a killed process (see
    :func:`remove_stale_temporaries`) from one that is being written.
    """
    return f".{Path(target).name}.{os.getpid()}."


def remove_stale_temporaries(
    target: str | os.PathLike[str], *, min_age_s: float = STALE_AFTER_S
) -> list[Path]:
    """Remove the temporaries (``.NAME.<pid>.<random>.tmp`` / ``.old``) of ``target`` left behind.

    One is stale when its creating process no longer exists and it has not changed for
    ``min_age_s`` seconds; the age guards a shared folder, where the pid may be another
    machine's or container's. Names without a pid are never touched. Returns what was removed.
    """
    p = Path(target)
    parent = p.parent if str(p.parent) else Path(".")
    pattern = re.compile(rf"\.{re.escape(p.name)}\.(\d+)\.[A-Za-z0-9_]+\.(?:tmp|old)")
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if time.time() - entry.stat(follow_symlinks=False).st_mtime >= min_age_s:
                _remove(Path(entry.path), is_dir=entry.is_dir(follow_symlinks=False))
                removed.append(Path(entry.path))
    return removed


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (in doubt: yes, so nothing is removed)."""
    if os.name == "nt" or pid <= 0:  # on Windows os.kill(pid, 0) would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:
        return False  # larger than any pid
    except OSError:
        return True  # e.g. PermissionError: it exists, owned by another user
    return True


def _remove(path: Path, *, is_dir: bool) -> None:
    if is_dir:
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink()


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
    ``mode`` (e.g. ``0o600`` for secrets, kept from creation on) or the umask default. Stale
    temporaries of ``path`` left by a killed process are removed first
    (:func:`remove_stale_temporaries`).
    """
    target = check_writable(path, force=force)
    remove_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent)
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


def check_output_dir(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Validate that folder ``path`` can be written by :func:`atomic_dir`, before any work is done.

    ``path`` must not be a file, must not be a folder that holds anything unless ``force`` (an
    empty one holds nothing to lose), and its parent must accept a new entry (probed by creating
    one, :func:`probe_directory`). Returns the parent.

    Raises:
        OutputExistsError: ``path`` is a folder that is not empty and ``force`` is false.
        InputError: ``path`` is a file, or its parent is missing or refuses new entries.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"output '{p}' exists and is not a folder")
    if p.is_dir() and not force and any(p.iterdir()):
        raise OutputExistsError(f"output folder '{p}' is not empty; pass --force to overwrite")
    return probe_directory(p)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a staging folder next to ``path``; on success it replaces ``path`` in one rename.

    On any exception the staging folder is removed and ``path`` is left as it was. An existing
    ``path`` (see :func:`check_output_dir`, checked before and again after the work) is moved
    into a ``.old`` temporary first and deleted after the swap. Staging folders left by a killed
    process are removed first (:func:`remove_stale_temporaries`).

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
        >>> with atomic_dir(out) as stage:
        ...     _ = (stage / "a.txt").write_text("a")
        >>> sorted(p.name for p in out.iterdir())
        ['a.txt']
    """
    target = Path(path)
    parent = check_output_dir(target, force=force)
    remove_stale_temporaries(target)
    stage = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=".tmp", dir=parent))
    try:
        yield stage
        check_output_dir(target, force=force)  # nothing appeared there during the work
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=".old", dir=parent))
            os.replace(target, old / target.name)
            os.replace(stage, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def read_input(
    path: str | os.PathLike[str], what: str, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes:
    """The bytes of an input file of at most ``max_bytes`` bytes.

    Only a regular file is read (``/dev/zero``, a FIFO or a socket could make the read endless
    or block), and it is read in bounded chunks, at most ``max_bytes + 1`` bytes in all, so no
    input makes the caller hang or allocate more than that.

    Args:
        path: The file.
        what: What the file is meant to be (``"public key"``, ``"watermark"``), for messages.
        max_bytes: Size limit, e.g. :data:`MAX_KEY_BYTES` or :data:`MAX_JSON_BYTES`.

    Raises:
        InputError: missing, a directory, not a regular file, unreadable, or larger than
            ``max_bytes``; the message names ``what`` and the path.
    """
    p = Path(path)
    try:
        _require_regular(p, os.stat(p).st_mode, what)
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise InputError(f"{what} file '{p}' not found") from None
    except IsADirectoryError:
        raise InputError(f"{what} file '{p}' is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} file '{p}': {exc.strerror}") from None
    with open(fd, "rb", buffering=0) as fh:
        try:
            st = os.fstat(fh.fileno())
            _require_regular(p, st.st_mode, what)  # the path may have changed since the stat
            data = b"" if st.st_size > max_bytes else _read_at_most(fh, max_bytes + 1)
        except OSError as exc:
            raise InputError(f"cannot read {what} file '{p}': {exc.strerror}") from None
    if st.st_size > max_bytes or len(data) > max_bytes:
        size = f"{st.st_size:,} bytes" if st.st_size > max_bytes else "more than that"
        raise InputError(
            f"{what} file '{p}' is too large: the limit is {max_bytes:,} bytes, it has {size}"
        )
    return data


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a file's bytes, read in chunks of 1 MiB.

    Raises:
        InputError: the file cannot be opened or read (the OS reason in the message).
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(_CHUNK_BYTES), b""):
                digest.update(block)
    except OSError as exc:
        raise InputError(f"cannot read '{Path(path)}': {exc.strerror}") from None
    return digest.hexdigest()


def regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if it is a regular file (hashing ``/dev/zero`` would never end).

    Raises:
        InputError: it cannot be read or is not a regular file (one line naming ``what``).
    """
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except OSError as exc:
        raise InputError(f"cannot read {what} '{p}': {exc.strerror}") from None
    _require_regular(p, mode, what)
    return p


def _require_regular(p: Path, mode: int, what: str) -> None:
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} file '{p}' is a directory")
    if not stat.S_ISREG(mode):
        raise InputError(
            f"{what} file '{p}' is not a regular file (a device, FIFO or socket is not read)"
        )


def _read_at_most(fh: BinaryIO, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = fh.read(min(_CHUNK_BYTES, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
