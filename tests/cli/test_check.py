"""Signer binding: a commitment counts only when signed by the owner key it names, the revealed
watermark only when signed by that same key, and ``verify`` says which key signed the watermark.

The attacker files are made for real: the owner's commitment statement and watermark document,
unchanged or with the owner key swapped, re-signed with a fresh key through the protocols API.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mapguard._cli import cli
from protocols import canonical, dsse, keys, statements
from verification.check import check
from verification.watermark_file import read_watermark, seal_watermark


def _resigned_commitment(embedded, key, out: Path) -> Path:
    """The owner's commitment statement, byte for byte, signed by ``key`` instead."""
    env = dsse.read_envelope(embedded.file("commitment.dsse.json"))
    statement = canonical.loads(dsse.verify_envelope(env, embedded.owner.key().public_key()))
    dsse.write_envelope(out, statements.sign_statement(statement, key))
    return out


def _resigned_watermark(embedded, key, out: Path) -> Path:
    """The owner's watermark document claimed by ``key`` (fingerprint, public key, signature)."""
    doc = read_watermark(embedded.file("owner.wm")).plain()
    public = keys.public_key_of(key)
    doc["owner_key_fingerprint"] = keys.fingerprint(public)
    doc["owner_public_key"] = public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    out.write_bytes(seal_watermark(doc, key))
    return out


def test_commitment_re_signed_by_another_key_fails_the_signer_check(
    embedded, other_owner, tmp_path
):
    forged = _resigned_commitment(embedded, other_owner.key(), tmp_path / "c.dsse.json")
    wm = _resigned_watermark(embedded, other_owner.key(), tmp_path / "owner.wm")
    for watermark in (None, wm):
        res = check(forged, other_owner.public, watermark)
        assert not res.ok and res.kind == "commitment"
        assert [(i.name, i.ok) for i in res.items] == [
            ("signature", True),
            ("schema", True),
            ("signer", False),
        ]
        detail = res.items[-1].detail
        assert f"signed by key {other_owner.fingerprint}" in detail
        assert f"names owner key {embedded.owner.fingerprint}" in detail
    # the statement is the owner's, so only the signer check stops it (same statement digest)
    assert res.statement_digest == read_watermark(embedded.file("owner.wm")).commitment_digest


def test_cli_check_refuses_the_re_signed_commitment(embedded, other_owner, tmp_path):
    forged = _resigned_commitment(embedded, other_owner.key(), tmp_path / "c.dsse.json")
    res = CliRunner().invoke(cli, ["check", str(forged), "--pubkey", str(other_owner.public)])
    assert res.exit_code == 1, res.output
    fail = [line for line in res.output.splitlines() if line.startswith("FAIL")]
    assert len(fail) == 1 and fail[0].split()[1] == "signer"
    assert other_owner.fingerprint in fail[0] and embedded.owner.fingerprint in fail[0]
    assert "commitment: CHECK FAILED" in res.output


def test_watermark_re_signed_by_another_key_fails_against_the_commitment(
    embedded, other_owner, tmp_path
):
    wm = _resigned_watermark(embedded, other_owner.key(), tmp_path / "owner.wm")
    res = check(embedded.file("commitment.dsse.json"), embedded.owner.public, wm)
    assert not res.ok and res.items[-1].name == "watermark", res.items
    detail = res.items[-1].detail
    assert f"signed by key {other_owner.fingerprint}" in detail
    assert f"not by {embedded.owner.fingerprint} (the owner key the commitment names)" in detail
    cli_res = CliRunner().invoke(
        cli,
        [
            "check",
            str(embedded.file("commitment.dsse.json")),
            "--pubkey",
            str(embedded.owner.public),
            "--watermark",
            str(wm),
        ],
    )
    assert cli_res.exit_code == 1 and "FAIL  watermark" in cli_res.output, cli_res.output


def _owner_key_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("owner key")]


def test_verify_prints_the_key_that_signed_the_watermark(embedded, other_owner, tmp_path):
    forged = _resigned_watermark(embedded, other_owner.key(), tmp_path / "owner.wm")
    note = "(signer of owner.wm; check it against the published commitment with 'mapguard check')"
    for wm, signer in ((embedded.file("owner.wm"), embedded.owner), (forged, other_owner)):
        out = tmp_path / f"{signer.fingerprint[7:15]}.json"
        res = CliRunner().invoke(
            cli,
            ["verify", str(embedded.file("protected.pt")), "--watermark", str(wm)]
            + ["--claim-nonce", "test-claim", "--out", str(out)],
        )
        # the re-signed copy holds the same secrets, so the verdict alone cannot tell them apart
        assert res.exit_code == 0 and "EVIDENCED" in res.output, res.output
        assert _owner_key_lines(res.output) == [f"owner key    {signer.fingerprint} {note}"]
