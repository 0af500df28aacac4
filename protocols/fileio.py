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
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from protocols.errors import InputError, OutputExistsError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_JSON_BYTES",
    "MAX_KEY_BYTES",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "read_input",
]

#: Size limits of :func:`read_input`. A PEM key is under 1 KiB; a signed commitment or result
#: is a few KiB. Anything else a caller does not bound itself (e.g. a watermark file, see
#: ``verification.watermark_file.MAX_FILE_BYTES``) gets the default.
MAX_KEY_BYTES = 64 * 1024
MAX_JSON_BYTES = 1024 * 1024
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024


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
