"""The owner's watermark file: inline verification set, signature, encryption, spec."""

from __future__ import annotations

import numpy as np
import pytest

from protocols import keys
from protocols.errors import InputError, SchemaError, SignatureError
from verification.watermark_file import (
    decode_verification_set,
    encode_verification_set,
    open_watermark,
    read_watermark,
    seal_watermark,
    verification_set_digest,
    watermark_spec,
)


def test_verification_set_round_trip_and_digest():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    y = np.array([0, 1, 2, 3, 9])
    vs = encode_verification_set(x, y, reference="builtin:mnist#test", indices=[4, 8, 15, 16, 23])
    x2, y2 = decode_verification_set(vs)
    assert np.array_equal(x, x2) and y2.tolist() == y.tolist()
    assert vs["sha256"] == verification_set_digest(x, y)
    # the digest binds every pixel and every label
    x[0, 0, 0, 0] ^= 1
    assert verification_set_digest(x, y) != vs["sha256"]
    assert verification_set_digest(x2, np.array([0, 1, 2, 3, 8])) != vs["sha256"]


def test_tampered_inline_set_is_refused():
    x = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    vs = encode_verification_set(x, np.array([1, 2]), reference="r")
    vs["inline"]["labels"] = [1, 3]
    with pytest.raises(InputError, match="does not match"):
        decode_verification_set(vs)
    with pytest.raises(InputError, match="no inline"):
        decode_verification_set({"reference": "r", "sha256": "00" * 32, "indices": [1]})


def test_embedded_watermark_opens_and_gives_a_spec(embedded):
    wm = read_watermark(embedded.file("owner.wm"))
    assert wm.signer == embedded.owner.fingerprint and not wm.encrypted
    spec = watermark_spec(wm)
    assert spec.family == "targeted_patch" and len(spec.secrets) == 3
    assert spec.n_images == 40 and spec.num_classes == 10
    assert spec.commitment_digest == wm.commitment_digest
    pub = keys.load_public_key(embedded.owner.public)
    assert read_watermark(embedded.file("owner.wm"), public_key=pub).document == wm.document


def test_watermark_signed_by_another_key_is_refused(embedded, other_owner):
    pub = keys.load_public_key(other_owner.public)
    with pytest.raises(SignatureError):
        read_watermark(embedded.file("owner.wm"), public_key=pub)


def test_encrypted_watermark_needs_the_passphrase(embedded):
    wm = read_watermark(embedded.file("owner.wm"))
    key = embedded.owner.key()
    sealed = seal_watermark(wm.plain(), key, passphrase=b"pw")
    assert b"secret" not in sealed and wm.document["secrets"][0]["secret"].encode() not in sealed
    with pytest.raises(InputError, match="passphrase is required"):
        open_watermark(sealed)
    with pytest.raises(InputError, match="wrong passphrase"):
        open_watermark(sealed, passphrase=b"nope")
    opened = open_watermark(sealed, passphrase=b"pw")
    assert opened.encrypted and opened.document == wm.document


def test_seal_refuses_invalid_documents_and_foreign_keys(embedded, other_owner):
    doc = read_watermark(embedded.file("owner.wm")).plain()
    with pytest.raises(InputError, match="owner key"):
        seal_watermark(doc, other_owner.key())
    del doc["openings"]
    with pytest.raises(SchemaError):
        seal_watermark(doc, embedded.owner.key())
