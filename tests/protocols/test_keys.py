from __future__ import annotations

import hashlib
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocols import keys
from protocols.errors import InputError, OutputExistsError

# Fingerprint of the committed TEST key (seed sha256(b"mapguard protocols test key v1"), see
# tests/data/protocols/regenerate.py). Pinned so a change of the fingerprint definition is caught.
GOLDEN_FINGERPRINT = "SHA256:da8e859d2c926cf28f391f697964fd19e7a27837674eace939eeb278f19cce29"


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_writes_pem_pair_with_private_mode_0600(tmp_path):
    info = keys.generate_keypair(tmp_path / "owner")
    assert info.private_path == tmp_path / "owner.key"
    assert info.public_path == tmp_path / "owner.pub"
    assert _mode(info.private_path) == 0o600
    assert info.private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert info.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert not info.encrypted
    private = keys.load_private_key(info.private_path)
    public = keys.load_public_key(info.public_path)
    assert keys.fingerprint(public) == keys.fingerprint(private.public_key()) == info.fingerprint
    public.verify(private.sign(b"m"), b"m")


def test_fingerprint_is_sha256_of_raw_public_key(private_key):
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert len(raw) == 32
    expected = "SHA256:" + hashlib.sha256(raw).hexdigest()
    assert keys.fingerprint(private_key.public_key()) == expected


def test_fingerprint_refuses_private_key(private_key):
    with pytest.raises(InputError, match="public_key_of"):
        keys.fingerprint(private_key)


def test_golden_test_key_loads_with_pinned_fingerprint(
    data_dir, golden_public_key, golden_passphrase
):
    assert keys.fingerprint(golden_public_key) == GOLDEN_FINGERPRINT
    encrypted = keys.load_private_key(
        data_dir / "test_ed25519_encrypted.key", passphrase=golden_passphrase
    )
    assert keys.fingerprint(encrypted.public_key()) == GOLDEN_FINGERPRINT


def golden_passphrase_round_trip_and_errors(tmp_path):
    info = keys.generate_keypair(tmp_path / "k", passphrase=b"pw")
    assert info.encrypted
    assert b"ENCRYPTED PRIVATE KEY" in info.private_path.read_bytes()
    key = keys.load_private_key(info.private_path, passphrase=b"pw")
    assert keys.fingerprint(key.public_key()) == info.fingerprint
    with pytest.raises(InputError, match="wrong passphrase"):
        keys.load_private_key(info.private_path, passphrase=b"nope")
    with pytest.raises(InputError, match="is encrypted; a passphrase is required"):
        keys.load_private_key(info.private_path)


def golden_passphrase_for_unencrypted_key_is_refused(tmp_path):
    info = keys.generate_keypair(tmp_path / "k")
    with pytest.raises(InputError, match="not encrypted"):
        keys.load_private_key(info.private_path, passphrase=b"pw")


@pytest.mark.parametrize("bad", [b"", "text"])
def test_bad_passphrase_type(tmp_path, bad):
    with pytest.raises(InputError, match="non-empty bytes"):
        keys.generate_keypair(tmp_path / "k", passphrase=bad)
    assert list(tmp_path.iterdir()) == []


def test_refuses_overwrite_and_writes_nothing(tmp_path):
    (tmp_path / "k.pub").write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="k.pub"):
        keys.generate_keypair(tmp_path / "k")
    assert not (tmp_path / "k.key").exists()
    assert (tmp_path / "k.pub").read_bytes() == b"keep"
    info = keys.generate_keypair(tmp_path / "k", force=True)
    assert keys.fingerprint(keys.load_public_key(info.public_path)) == info.fingerprint


def test_missing_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        keys.generate_keypair(tmp_path / "nope" / "k")


@pytest.mark.parametrize("loader", [keys.load_private_key, keys.load_public_key])
def test_missing_and_garbage_files(tmp_path, loader):
    with pytest.raises(InputError, match="not found"):
        loader(tmp_path / "missing")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN NOTHING-----\nzzzz\n")
    with pytest.raises(InputError, match="cannot load"):
        loader(garbage)
    with pytest.raises(InputError, match="directory"):
        loader(tmp_path)


def test_swapped_key_files_are_explained(tmp_path):
    info = keys.generate_keypair(tmp_path / "k")
    with pytest.raises(InputError, match="holds a private key"):
        keys.load_public_key(info.private_path)
    with pytest.raises(InputError, match="not a PEM private key"):
        keys.load_private_key(info.public_path)


def test_non_ed25519_keys_are_refused(tmp_path):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    priv = tmp_path / "ec.key"
    pub = tmp_path / "ec.pub"
    priv.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(InputError, match="expected Ed25519"):
        keys.load_private_key(priv)
    with pytest.raises(InputError, match="expected Ed25519"):
        keys.load_public_key(pub)


def test_key_info_is_frozen(tmp_path):
    info = keys.generate_keypair(tmp_path / "k")
    with pytest.raises(AttributeError):
        info.fingerprint = "x"  # type: ignore[misc]
