from __future__ import annotations

import pytest

from protocols import secretbox
from protocols.errors import InputError

FAST = 10  # scrypt N = 2**10 keeps tests fast; production default is 2**15


def test_round_trip_and_randomised_output():
    a = secretbox.encrypt(b"payload", b"pw", log2_n=FAST)
    b = secretbox.encrypt(b"payload", b"pw", log2_n=FAST)
    assert a != b  # fresh salt and nonce
    assert secretbox.decrypt(a, b"pw") == secretbox.decrypt(b, b"pw") == b"payload"
    assert secretbox.is_encrypted(a) and not secretbox.is_encrypted(b'{"json": 1}')


def test_default_cost_round_trip():
    box = secretbox.encrypt(b"x", b"pw")
    assert box[7] == secretbox.DEFAULT_LOG2_N
    assert secretbox.decrypt(box, b"pw") == b"x"


def test_wrong_passphrase_is_one_clear_error():
    box = secretbox.encrypt(b"payload", b"pw", log2_n=FAST)
    with pytest.raises(InputError, match="^cannot decrypt: wrong passphrase or corrupted file$"):
        secretbox.decrypt(box, b"pW")


def test_every_byte_is_authenticated():
    box = secretbox.encrypt(b"0123456789", b"pw", log2_n=FAST)
    for pos in range(len(box)):
        tampered = bytearray(box)
        tampered[pos] ^= 0x01
        with pytest.raises(InputError):
            secretbox.decrypt(bytes(tampered), b"pw")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not a box", "bad magic"),
        (b"MGSBOX\x01\x0a" + bytes(10), "truncated"),
        (b"MGSBOX\x02\x0a" + bytes(60), "version 2 is not supported"),
        (b"MGSBOX\x01\x28" + bytes(60), "log2_n=40 is out of range"),
    ],
)
def test_malformed_boxes(data, fragment):
    with pytest.raises(InputError) as info:
        secretbox.decrypt(data, b"pw")
    assert fragment in str(info.value)


@pytest.mark.parametrize(("passphrase", "log2_n"), [(b"", FAST), ("pw", FAST), (b"pw", 9)])
def test_bad_arguments(passphrase, log2_n):
    with pytest.raises(InputError):
        secretbox.encrypt(b"x", passphrase, log2_n=log2_n)


def test_golden_box_still_decrypts(data_dir, golden_passphrase):
    box = (data_dir / "secretbox-v1.bin").read_bytes()
    assert secretbox.decrypt(box, golden_passphrase) == b"golden secretbox plaintext\n"
