"""Every single-byte change of a signed commitment is rejected by ``check``, at the signature.

What is allowed, precisely: the file is the canonical JSON of the DSSE envelope plus one newline;
the newline is not signed, so deleting it or replacing it with other JSON whitespace (space, tab,
carriage return) leaves an identical envelope. Every other replacement (XOR 0x01, a different
printable character) and every other deletion must fail the ``signature`` step, before anything
of the statement is read. (Inserting a byte is not a change of a byte and is not tested here.)
"""

from __future__ import annotations

import hashlib
import random

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols import canonical, dsse, keys, openings, statements
from verification.check import check

_JSON_WHITESPACE = frozenset(b" \t\r\n")
_PRINTABLE = bytes(range(0x20, 0x7F))


def _small_commitment(key: Ed25519PrivateKey) -> dict:
    """A valid, signed commitment envelope of about 1.8 KB (no model needed)."""
    rng = random.Random(0)
    core = {
        "secrets": [{"secret": rng.randbytes(32).hex(), "trigger": {"size": 8}} for _ in range(2)],
        "trigger_family": {"name": "targeted_patch", "parameters": {"min_size": 8}},
        "verification_set": {
            "reference": "builtin:mnist#test",
            "sha256": hashlib.sha256(b"verification set").hexdigest(),
            "indices": [1, 2, 3],
        },
    }
    public, _ = openings.make_commitments(core, rng=random.Random(1))
    model = hashlib.sha256(b"protected model").hexdigest()
    predicate = {
        "schema_version": "1",
        "created": "2025-01-01T00:00:00Z",
        "tool": {"name": "mapguard", "version": "test"},
        "owner_key_fingerprint": keys.fingerprint(key.public_key()),
        "model": {"sha256": model, "name": "protected.pt", "format": "safetensors"},
        "method": {"name": "map-watermark", "parameters": {}},
        "trigger_family": core["trigger_family"],
        "commitments": public,
        "verification": {
            "n_secrets": 2,
            "null_keys_per_secret": 19,
            "queries_per_key": 3,
            "test": "combined-rank",
        },
    }
    statement = statements.make_statement(
        subjects=[("protected.pt", model)],
        predicate_type=statements.COMMITMENT_PREDICATE_TYPE,
        predicate=predicate,
    )
    return statements.sign_statement(statement, key)


def _other_printable(byte: int) -> int:
    """A printable character other than ``byte``: 47 places on in the printable cycle."""
    start = _PRINTABLE.index(byte) if byte in _PRINTABLE else 0
    return _PRINTABLE[(start + 47) % len(_PRINTABLE)]


def _mutations(data: bytes):
    for i, byte in enumerate(data):
        yield f"xor 0x01 at {i}", data[:i] + bytes([byte ^ 0x01]) + data[i + 1 :]
        yield f"printable at {i}", data[:i] + bytes([_other_printable(byte)]) + data[i + 1 :]
        yield f"delete at {i}", data[:i] + data[i + 1 :]
    for ws in b" \t\r":  # the trailing newline changed into other JSON whitespace
        yield f"trailing {chr(ws)!r}", data[:-1] + bytes([ws])


def _allowed(body: bytes, mutated: bytes) -> bool:
    """Same canonical envelope, followed by JSON whitespace only."""
    return mutated[: len(body)] == body and set(mutated[len(body) :]) <= _JSON_WHITESPACE


def test_every_single_byte_change_is_rejected_at_the_signature(tmp_path):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "commitment.dsse.json"
    dsse.write_envelope(path, _small_commitment(key))
    data = path.read_bytes()
    body = data[:-1]
    assert data.endswith(b"\n") and body == canonical.canonical_bytes(canonical.loads(body))
    assert len(data) < 4096  # small enough to try every byte in a few seconds
    assert check(path, key.public_key()).ok
    accepted, rejected = [], 0
    for name, mutated in _mutations(data):
        assert mutated != data, name
        path.write_bytes(mutated)
        res = check(path, key.public_key())
        if _allowed(body, mutated):
            assert res.ok, (name, res.items)
            accepted.append(name)
        else:
            assert not res.ok and [i.name for i in res.items] == ["signature"], (name, res.items)
            rejected += 1
    last = len(data) - 1
    assert sorted(accepted) == sorted(
        [f"delete at {last}", "trailing ' '", "trailing '\\t'", "trailing '\\r'"]
    )
    assert rejected == 3 * len(data) - 1
