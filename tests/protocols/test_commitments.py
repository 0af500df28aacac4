from __future__ import annotations

import dataclasses
import hashlib
import random

import numpy as np
import pytest

from protocols import commitments
from protocols.errors import InputError, SchemaError


def _spec_digest(kind: bytes, body: bytes, nonce: bytes) -> str:
    """The construction documented in protocols.commitments, re-implemented independently."""
    return hashlib.sha256(
        b"mapguard/commitment/v1\x00" + kind + len(nonce).to_bytes(8, "big") + nonce + body
    ).hexdigest()


def test_matches_documented_construction():
    nonce = bytes(range(32))
    c = commitments.commit(b"secret", nonce=nonce)
    assert c.digest == _spec_digest(b"B", b"secret", nonce)
    assert c.nonce == nonce.hex() and c.algorithm == "sha256"
    d = commitments.commit({"b": 1, "a": [1.5]}, nonce=nonce)
    assert d.digest == _spec_digest(b"J", b'{"a":[1.5],"b":1}', nonce)


def test_open_and_refuse():
    c = commitments.commit({"secrets": ["ab" * 32]})
    assert commitments.open_commitment(c.digest, {"secrets": ["ab" * 32]}, c.nonce)
    assert commitments.open_commitment(c.digest, {"secrets": ["ab" * 32]}, bytes.fromhex(c.nonce))
    assert not commitments.open_commitment(c.digest, {"secrets": ["ab" * 31 + "ac"]}, c.nonce)
    other_nonce = bytes(32) if c.nonce != "00" * 32 else bytes([1] * 32)
    assert not commitments.open_commitment(c.digest, {"secrets": ["ab" * 32]}, other_nonce)


def test_key_order_does_not_matter():
    nonce = b"n" * 32
    a = commitments.commit({"x": 1, "y": 2}, nonce=nonce)
    assert commitments.open_commitment(a.digest, {"y": 2, "x": 1}, nonce)


def test_bytes_never_open_as_the_json_they_spell():
    nonce = b"n" * 32
    as_json = commitments.commit({"a": 1}, nonce=nonce)
    assert not commitments.open_commitment(as_json.digest, b'{"a":1}', nonce)


def test_nonce_length_is_bound():
    # Without the length prefix, (nonce + b"x", value) and (nonce, b"x" + value) would collide.
    nonce = b"n" * 32
    c = commitments.commit(b"xvalue", nonce=nonce)
    assert not commitments.open_commitment(c.digest, b"value", nonce + b"x")


def test_fresh_nonces_hide_equal_values():
    a, b = commitments.commit(b"same"), commitments.commit(b"same")
    assert a.digest != b.digest and a.nonce != b.nonce
    assert len(bytes.fromhex(a.nonce)) == commitments.NONCE_BYTES


@pytest.mark.parametrize("make_rng", [lambda: random.Random(7), lambda: np.random.default_rng(7)])
def test_seeded_rng_is_reproducible(make_rng):
    assert commitments.commit(b"v", rng=make_rng()) == commitments.commit(b"v", rng=make_rng())


def test_public_part_has_no_nonce():
    c = commitments.commit(b"v")
    assert c.public() == {"digest": c.digest, "algorithm": "sha256"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.nonce = "00"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"value": "text"}, "bytes or a JSON object"),
        ({"value": [1, 2]}, "bytes or a JSON object"),
        ({"value": b"v", "nonce": b"short"}, "5 bytes; at least 16"),
        ({"value": b"v", "nonce": "zz"}, "is not hex"),
        ({"value": b"v", "nonce": b"n" * 32, "rng": random.Random(0)}, "not both"),
        ({"value": b"v", "rng": object()}, "rng must be"),
    ],
)
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(InputError) as info:
        commitments.commit(**kwargs)
    assert fragment in str(info.value)


def test_uncanonicalisable_value():
    with pytest.raises(SchemaError, match=r"\$\.seed"):
        commitments.commit({"seed": 2**60})


@pytest.mark.parametrize("digest", ["AB" * 32, "ab" * 31, 5])
def test_malformed_digest_is_an_error_not_false(digest):
    with pytest.raises(InputError, match="64 lower-case hex"):
        commitments.open_commitment(digest, b"v", b"n" * 32)
