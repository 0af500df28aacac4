"""RFC 3161 tokens on a commitment, against a real TSA (``openssl ts -reply``, tests/_tsa.py).

What the token covers is the commitment digest (SHA-256 of the statement's canonical JSON); the
token verifies only with the TSA certificate the arbiter supplies, valid at the token's time.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from protocols import canonical
from protocols.errors import InputError
from verification import timestamps
from verification.check import check


@pytest.fixture(scope="module")
def authority(tsa, tmp_path_factory):
    return tsa.Authority.create(tmp_path_factory.mktemp("tsa"))


@pytest.fixture(scope="module")
def commitment(tsa, tmp_path_factory):
    return tsa.write_commitment(tmp_path_factory.mktemp("owner"))


def _token(authority, commitment, **kwargs) -> bytes:
    return authority.token_for(canonical.canonical_bytes(commitment.statement), **kwargs)


def _check(commitment, token: bytes, chain: Path, tmp_path: Path):
    (tmp_path / "c.tsr").write_bytes(token)
    return check(commitment.path, commitment.pubkey, timestamp=tmp_path / "c.tsr", tsa_cert=chain)


def test_token_of_the_commitment_digest_verifies(authority, commitment, tmp_path):
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    res = _check(commitment, _token(authority, commitment), authority.chain, tmp_path)
    assert res.ok, res.items
    assert [i.name for i in res.items] == ["signature", "schema", "signer", "subject", "timestamp"]
    certified = res.timestamp
    assert certified.digest == res.statement_digest  # the commitment digest, nothing else
    assert certified.tsa == "CN=Test TSA" and certified.policy == "1.3.6.1.4.1.99999.1"
    assert certified.accuracy_seconds == 1.0 and certified.hash_algorithm == "sha256"
    assert before <= certified.datetime <= dt.datetime.now(dt.timezone.utc)
    assert certified.time in res.items[-1].detail
    assert res.created == "2025-01-01T00:00:00Z"


def test_token_without_embedded_certificate_verifies_with_the_given_one(
    authority, commitment, tmp_path
):
    res = _check(commitment, _token(authority, commitment, cert=False), authority.chain, tmp_path)
    assert res.ok, res.items[-1]


def test_token_for_another_digest_fails(authority, commitment, tmp_path):
    token = authority.token_for(canonical.canonical_bytes({"another": "statement"}))
    res = _check(commitment, token, authority.chain, tmp_path)
    assert not res.ok and res.items[-1].name == "timestamp" and res.timestamp is None
    assert f"not this commitment's digest {res.statement_digest}" in res.items[-1].detail


def test_token_of_the_envelope_file_bytes_is_not_the_commitment_digest(
    authority, commitment, tmp_path
):
    token = authority.token_for(commitment.path.read_bytes())
    assert not _check(commitment, token, authority.chain, tmp_path).ok


def test_token_signed_by_another_tsa_fails(tsa, authority, commitment, tmp_path):
    other = tsa.Authority.create(tmp_path / "other", name="Other TSA")
    res = _check(commitment, _token(other, commitment), authority.chain, tmp_path)
    assert not res.ok and "does not verify with the TSA certificate" in res.items[-1].detail


def test_token_of_another_tsa_under_the_same_root_fails(tsa, authority, commitment, tmp_path):
    """A certificate in the token that chains to the trusted root is still not the TSA's."""
    sibling = tsa.Authority.create(tmp_path / "sibling", name="Sibling TSA", ca_from=authority)
    token = _token(sibling, commitment)
    assert _check(commitment, token, sibling.chain, tmp_path).ok  # a good token of its own TSA
    res = _check(commitment, token, authority.chain, tmp_path)
    assert not res.ok and "does not match" in res.items[-1].detail


@pytest.mark.parametrize("what", ["time", "signature"])
def test_tampered_token_fails(authority, commitment, tmp_path, what):
    token = bytearray(_token(authority, commitment))
    if what == "time":  # one digit of genTime inside the signed TSTInfo
        read = timestamps.read_token(bytes(token))
        stamp = read.datetime.strftime("%Y%m%d%H%M%S").encode()
        at = bytes(token).index(stamp) + 3
        token[at] = ord("0") + (token[at] - ord("0") + 1) % 10
    else:
        token[-5] ^= 0x01
    res = _check(commitment, bytes(token), authority.chain, tmp_path)
    assert not res.ok and res.items[-1].name == "timestamp"


def test_garbage_token_is_a_failed_check(authority, commitment, tmp_path):
    res = _check(commitment, b"not a token", authority.chain, tmp_path)
    assert not res.ok and "not an RFC 3161 time-stamp response" in res.items[-1].detail


def test_tsa_certificate_expired_before_the_token_fails(tsa, commitment, tmp_path):
    old = tsa.Authority.create(tmp_path / "old", start="20200101000000Z", end="20200201000000Z")
    res = _check(commitment, _token(old, commitment), old.chain, tmp_path)
    assert not res.ok and "certificate" in res.items[-1].detail


def test_tsa_certificate_not_yet_valid_at_the_token_fails(tsa, commitment, tmp_path):
    young = tsa.Authority.create(tmp_path / "new", start="20990101000000Z", end="20990201000000Z")
    res = _check(commitment, _token(young, commitment), young.chain, tmp_path)
    assert not res.ok and "certificate" in res.items[-1].detail


def test_tsa_certificate_expired_since_the_token_still_verifies(tsa, commitment, tmp_path):
    """Certificates need only be valid at the token's time (rfc3161-client's rule)."""
    end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3)
    short = tsa.Authority.create(tmp_path / "short", end=end.strftime("%Y%m%d%H%M%SZ"))
    token = _token(short, commitment)
    time.sleep(max(0.0, (end - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1.1)
    assert _check(commitment, token, short.chain, tmp_path).ok


def test_a_result_or_unsigned_commitment_gets_no_timestamp_step(authority, commitment, tmp_path):
    forged = tmp_path / "forged.dsse.json"
    forged.write_text(commitment.path.read_text().replace('"sig":"', '"sig":"AA', 1))
    (tmp_path / "c.tsr").write_bytes(_token(authority, commitment))
    res = check(forged, commitment.pubkey, timestamp=tmp_path / "c.tsr", tsa_cert=authority.chain)
    assert not res.ok and [i.name for i in res.items] == ["signature"]


def test_timestamp_without_tsa_cert_is_a_one_line_input_error(authority, commitment, tmp_path):
    (tmp_path / "c.tsr").write_bytes(_token(authority, commitment))
    with pytest.raises(InputError, match="needs the TSA's certificate"):
        check(commitment.path, commitment.pubkey, timestamp=tmp_path / "c.tsr")


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        ("ca", "no certificate with the time-stamping purpose"),
        ("tsa", "no self-signed root certificate"),
        ("junk", "not PEM certificates"),
    ],
)
def test_unusable_tsa_certificate_file(authority, tmp_path, pem, message):
    path = tmp_path / "cert.pem"
    path.write_bytes({"ca": authority.ca, "tsa": authority.tsa}[pem].read_bytes()
                     if pem != "junk" else b"-----BEGIN CERTIFICATE-----\nAAAA\n")  # fmt: skip
    with pytest.raises(timestamps.TimestampError, match=message):
        timestamps.load_tsa_trust(path)


def test_request_certifies_the_commitment_digest_and_checks_the_nonce(authority, commitment):
    request = timestamps.timestamp_request(commitment.statement)
    assert request.digest == timestamps.commitment_digest(commitment.statement)
    reply = authority.reply(request.der)
    assert timestamps.check_reply(reply, request).nonce == str(request.nonce)
    trust = timestamps.load_tsa_trust(authority.chain)
    certified = timestamps.verify_timestamp(reply, commitment.statement, trust, nonce=request.nonce)
    assert certified.tsa_certificate_sha256 == trust.fingerprint
    other = timestamps.timestamp_request(commitment.statement)
    with pytest.raises(timestamps.TimestampError, match="nonce"):
        timestamps.check_reply(reply, other)


# ---- the order sentence -------------------------------------------------------------------------
def _certified(when: str, accuracy: float | None = 1.0) -> timestamps.CertifiedTime:
    return timestamps.CertifiedTime(
        time=when, accuracy_seconds=accuracy, serial_number="1", policy="1.2.3",
        hash_algorithm="sha256", digest="ab" * 32, nonce=None, tsa_name=None,
        tsa="CN=Test TSA", tsa_certificate_sha256="SHA256:" + "cd" * 32, trust_source="c.pem",
    )  # fmt: skip


def test_order_established_only_when_certified_time_is_before_first_seen():
    first = timestamps.parse_time("2026-05-01T00:00:00Z")
    yes = timestamps.time_order(_certified("2026-04-30T23:59:58Z"), first)
    assert yes.established and timestamps.PREDATES in yes.sentence
    assert "CN=Test TSA" in yes.sentence and "2026-05-01T00:00:00Z" in yes.sentence
    # within the accuracy of the first known date: not established
    close = timestamps.time_order(_certified("2026-04-30T23:59:59.500000Z"), first)
    assert not close.established and "not established" in close.sentence
    later = timestamps.time_order(_certified("2026-05-02T00:00:00Z"), first)
    assert not later.established and "not before" in later.sentence
    unknown = timestamps.time_order(_certified("2026-04-01T00:00:00Z"), None)
    assert not unknown.established and "no first known date" in unknown.sentence


def test_order_without_a_token_is_the_owners_clock():
    first = timestamps.parse_time("2026-05-01")
    order = timestamps.time_order(None, first, stated="2020-01-01T00:00:00Z")
    assert not order.established and timestamps.PREDATES not in order.sentence
    assert "owner's own clock" in order.sentence and "2020-01-01T00:00:00Z" in order.sentence


@pytest.mark.parametrize("text", ["2026-05-01T00:00:00", "yesterday", "2026-13-01"])
def test_parse_time_refuses_times_without_offset_or_malformed(text):
    with pytest.raises(timestamps.TimestampError, match="RFC 3339"):
        timestamps.parse_time(text, what="--suspect-first-seen")


def test_parse_time_offsets():
    assert timestamps.parse_time("2026-05-01T02:00:00+02:00") == timestamps.parse_time(
        "2026-05-01T00:00:00Z"
    )
