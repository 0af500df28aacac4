"""``read_input``: bounded reads of regular files only; every refusal is one clear InputError.
And ``sha256_file``, the one file digest of the project."""

from __future__ import annotations

import hashlib
import os
import sys
import threading

import pytest

from protocols import canonical, keys
from protocols.errors import InputError
from protocols.fileio import MAX_JSON_BYTES, MAX_KEY_BYTES, read_input, sha256_file


def test_reads_a_regular_file_up_to_the_limit(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"a" * 100)
    assert read_input(path, "test", max_bytes=100) == b"a" * 100
    with pytest.raises(
        InputError, match=r"test file '.*x.bin' is too large: the limit is 99 bytes"
    ):
        read_input(path, "test", max_bytes=99)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_dev_zero_is_refused_at_once():
    with pytest.raises(InputError, match="'/dev/zero' is not a regular file"):
        read_input("/dev/zero", "watermark")


@pytest.mark.skipif(sys.platform == "win32", reason="needs mkfifo")
def test_a_fifo_without_writer_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            read_input(fifo, "JSON")
        except InputError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "read_input blocked on a FIFO"
    assert len(outcome) == 1 and "is not a regular file" in str(outcome[0])


def test_missing_and_directory_keep_their_messages(tmp_path):
    with pytest.raises(InputError, match="JSON file '.*nope.json' not found"):
        read_input(tmp_path / "nope.json", "JSON")
    with pytest.raises(InputError, match="is a directory"):
        read_input(tmp_path, "JSON")


def test_keys_and_json_have_small_limits(tmp_path):
    big_key = tmp_path / "big.pub"
    big_key.write_bytes(b"-" * (MAX_KEY_BYTES + 1))
    with pytest.raises(InputError, match=f"public key file .* limit is {MAX_KEY_BYTES:,} bytes"):
        keys.load_public_key(big_key)
    big_json = tmp_path / "big.json"
    big_json.write_bytes(b" " * (MAX_JSON_BYTES + 1))
    with pytest.raises(InputError, match=f"it has {MAX_JSON_BYTES + 1:,} bytes"):
        canonical.read_json(big_json)


def test_sha256_file_streams_the_bytes_and_names_an_unreadable_path(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 5)  # more than one 1 MiB chunk, not a multiple of it
    (tmp_path / "m.bin").write_bytes(data)
    assert sha256_file(tmp_path / "m.bin") == hashlib.sha256(data).hexdigest()
    with pytest.raises(InputError, match=r"cannot read '.*missing.bin'"):
        sha256_file(tmp_path / "missing.bin")
