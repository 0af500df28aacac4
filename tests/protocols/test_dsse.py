from __future__ import annotations

import base64
import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

from protocols import dsse, keys, statements
from protocols.errors import InputError, OutputExistsError, SignatureError

GOLDEN = "commitment-v1.dsse.json"


def test_pae_matches_dsse_spec_example():
    # DSSE protocol.md (secure-systems-lab/dsse v1.0), "Test vector".
    assert (
        dsse.pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_utf8_bytes_not_characters():
    assert dsse.pae("t\u00e9", b"") == "DSSEv1 3 t\u00e9 0 ".encode()


def test_sign_produces_standard_dsse_json(private_key):
    env = dsse.sign_envelope(b"\x00payload", "application/x-test", private_key)
    assert set(env) == {"payload", "payloadType", "signatures"}
    assert base64.b64decode(env["payload"]) == b"\x00payload"
    (sig,) = env["signatures"]
    assert sig["keyid"] == keys.fingerprint(private_key.public_key())
    raw_sig = base64.b64decode(sig["sig"])
    private_key.public_key().verify(raw_sig, dsse.pae("application/x-test", b"\x00payload"))
    assert dsse.verify_envelope(env, private_key.public_key()) == b"\x00payload"


def test_wrong_key_is_refused(private_key, other_private_key):
    env = dsse.sign_envelope(b"p", "t", private_key)
    with pytest.raises(SignatureError, match="no signature by key"):
        dsse.verify_envelope(env, other_private_key.public_key())
    env["signatures"][0]["keyid"] = ""  # even without the keyid hint the signature fails
    with pytest.raises(SignatureError, match="does not verify"):
        dsse.verify_envelope(env, other_private_key.public_key())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("payload", base64.b64encode(b"q").decode()),
        ("payloadType", "t2"),
    ],
)
def test_tampered_content_is_refused(private_key, field, value):
    env = dsse.sign_envelope(b"p", "t", private_key)
    env[field] = value
    with pytest.raises(SignatureError, match="does not verify"):
        dsse.verify_envelope(env, private_key.public_key())


def test_tampered_signature_is_refused(private_key):
    env = dsse.sign_envelope(b"p", "t", private_key)
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[10] ^= 1
    env["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(SignatureError, match="does not verify"):
        dsse.verify_envelope(env, private_key.public_key())


def test_expected_payload_type(private_key):
    env = dsse.sign_envelope(b"p", "text/plain", private_key)
    with pytest.raises(SignatureError, match="expected 'application/json'"):
        dsse.verify_envelope(
            env, private_key.public_key(), expected_payload_type="application/json"
        )


def _mutations():
    def drop(field):
        return lambda e: e.pop(field)

    def set_(path, value):
        def apply(e):
            target = e
            for p in path[:-1]:
                target = target[p]
            target[path[-1]] = value

        return apply

    return {
        "not an object": lambda e: None,
        "no payload": drop("payload"),
        "no payloadType": drop("payloadType"),
        "no signatures": drop("signatures"),
        "extra field": set_(["extra"], 1),
        "empty signatures": set_(["signatures"], []),
        "signatures not list": set_(["signatures"], {"sig": "AA=="}),
        "signature not object": set_(["signatures", 0], "sig"),
        "signature extra field": set_(["signatures", 0, "cert"], "x"),
        "keyid not string": set_(["signatures", 0, "keyid"], 7),
        "payload not string": set_(["payload"], 7),
        "payloadType empty": set_(["payloadType"], ""),
        "payload not base64": set_(["payload"], "***"),
        "payload url-safe base64": set_(["payload"], "-_8="),
        "payload unpadded": set_(["payload"], "cA"),
        "payload non-canonical bits": set_(["payload"], "cB=="),
        "sig too short": set_(["signatures", 0, "sig"], "AAAA"),
    }


@pytest.mark.parametrize("name", sorted(_mutations()))
def test_malformed_envelopes_raise_signature_error(private_key, name):
    env = dsse.sign_envelope(b"p", "t", private_key)
    if name == "not an object":
        env = ["not", "an", "object"]
    else:
        _mutations()[name](env)
    with pytest.raises(SignatureError):
        dsse.verify_envelope(env, private_key.public_key())


def test_one_valid_signature_among_several_suffices(private_key, other_private_key):
    env = dsse.sign_envelope(b"p", "t", private_key)
    other = dsse.sign_envelope(b"p", "t", other_private_key)
    env["signatures"] = other["signatures"] + env["signatures"]
    assert dsse.verify_envelope(env, private_key.public_key()) == b"p"
    assert dsse.verify_envelope(env, other_private_key.public_key()) == b"p"


def test_interoperates_with_securesystemslib(private_key):
    keyid = keys.fingerprint(private_key.public_key())
    sslib_key = SSlibKey.from_crypto(private_key.public_key(), keyid=keyid)
    ours = dsse.sign_envelope(b"interop", "text/plain", private_key)
    assert keyid in Envelope.from_dict(copy.deepcopy(ours)).verify([sslib_key], 1)
    theirs = Envelope(payload=b"interop", payload_type="text/plain", signatures={})
    theirs.sign(CryptoSigner(private_key, sslib_key))
    assert dsse.verify_envelope(theirs.to_dict(), private_key.public_key()) == b"interop"


def test_write_read_round_trip(tmp_path, private_key):
    env = dsse.sign_envelope(b"p", "t", private_key)
    path = dsse.write_envelope(tmp_path / "e.json", env)
    assert dsse.read_envelope(path) == env
    assert path.read_bytes().endswith(b"}\n") and b" " not in path.read_bytes()
    with pytest.raises(OutputExistsError):
        dsse.write_envelope(path, env)
    with pytest.raises(SignatureError):
        dsse.write_envelope(tmp_path / "bad.json", {"payload": "x"})
    assert not (tmp_path / "bad.json").exists()


def test_read_envelope_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        dsse.read_envelope(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text('{"payload": "AA=="}')
    with pytest.raises(SignatureError, match="x.json.*lacks field"):
        dsse.read_envelope(tmp_path / "x.json")


def test_envelope_digest_ignores_whitespace(private_key):
    env = dsse.sign_envelope(b"p", "t", private_key)
    assert dsse.envelope_digest(env) == dsse.envelope_digest(dict(reversed(list(env.items()))))


def test_signing_is_deterministic_for_the_golden_key(golden_private_key):
    # Ed25519 is deterministic (RFC 8032): same key + message => same envelope bytes.
    a = dsse.sign_envelope(b"golden", "text/plain", golden_private_key)
    b = dsse.sign_envelope(b"golden", "text/plain", golden_private_key)
    assert a == b


# --- the golden envelope, and tampering with its file -------------------------------------------


def test_golden_envelope_still_verifies(data_dir, golden_public_key):
    env = dsse.read_envelope(data_dir / GOLDEN)
    statement = statements.verify_statement(
        env, golden_public_key, expected_predicate_type=statements.COMMITMENT_PREDICATE_TYPE
    )
    assert statement["predicate"]["owner_key_fingerprint"] == keys.fingerprint(golden_public_key)


@pytest.fixture(scope="module")
def golden_bytes(data_dir):
    return (data_dir / GOLDEN).read_bytes()


@pytest.fixture(scope="module")
def golden_statement(data_dir, golden_public_key):
    return statements.verify_statement(dsse.read_envelope(data_dir / GOLDEN), golden_public_key)


@pytest.fixture(scope="module")
def scratch_file(tmp_path_factory):
    return tmp_path_factory.mktemp("tamper") / "envelope.json"


def _verify_file(path, data, public_key):
    """The statement if ``data``, written as an envelope file, is accepted; None on InputError."""
    path.write_bytes(data)
    try:
        return statements.verify_statement(dsse.read_envelope(path), public_key)
    except InputError:  # includes SignatureError and SchemaError
        return None


def _assert_same_envelope(original, mutated, accepted, expected):
    # JSON ignores whitespace between tokens, so a change that only adds, removes or swaps such
    # whitespace leaves the same envelope. Anything else accepted is a silent accept.
    assert accepted == expected
    assert dsse.parse_envelope(mutated) == dsse.parse_envelope(original), mutated


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_is_detected(
    data, golden_bytes, golden_statement, golden_public_key, scratch_file
):
    pos = data.draw(st.integers(0, len(golden_bytes) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != golden_bytes[pos]), label="value")
    mutated = golden_bytes[:pos] + bytes([value]) + golden_bytes[pos + 1 :]
    accepted = _verify_file(scratch_file, mutated, golden_public_key)
    if accepted is not None:
        # our files hold exactly one insignificant byte: the final newline
        assert pos == len(golden_bytes) - 1 and value in b" \t\r\n"
        _assert_same_envelope(golden_bytes, mutated, accepted, golden_statement)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_byte_deletion_or_insertion_is_detected(
    data, golden_bytes, golden_statement, golden_public_key, scratch_file
):
    pos = data.draw(st.integers(0, len(golden_bytes)), label="position")
    if data.draw(st.booleans(), label="insert"):
        mutated = golden_bytes[:pos] + bytes([data.draw(st.integers(0, 255))]) + golden_bytes[pos:]
    else:
        pos = min(pos, len(golden_bytes) - 1)
        mutated = golden_bytes[:pos] + golden_bytes[pos + 1 :]
    accepted = _verify_file(scratch_file, mutated, golden_public_key)
    if accepted is not None:
        _assert_same_envelope(golden_bytes, mutated, accepted, golden_statement)


def test_the_tamper_oracle_accepts_the_untouched_file(
    golden_bytes, golden_statement, golden_public_key, scratch_file
):
    # Guards the property tests above against an oracle that rejects everything.
    assert _verify_file(scratch_file, golden_bytes, golden_public_key) == golden_statement
    assert _verify_file(scratch_file, golden_bytes[:-1] + b" ", golden_public_key) is not None


@pytest.mark.parametrize("mask", [0x01, 0x20, 0x80])
def test_every_bit_flip_of_the_golden_file_is_detected(mask, data_dir, golden_public_key):
    original = (data_dir / GOLDEN).read_bytes()
    silent = []
    for pos in range(len(original) - 1):  # the final newline is insignificant JSON whitespace
        mutated = bytearray(original)
        mutated[pos] ^= mask
        try:
            envelope = dsse.parse_envelope(bytes(mutated))
            statements.verify_statement(envelope, golden_public_key)
        except InputError:
            continue
        silent.append(pos)
    assert silent == []
