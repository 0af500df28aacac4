"""``mapguard report``: refusal on bad signatures (exit 2, one line), --allow-unverified, --json."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from click.testing import CliRunner

from mapguard._cli import cli
from protocols import canonical, keys


def _run(*args: str):
    return CliRunner().invoke(cli, list(map(str, args)))


def _args(inputs, out, *extra):
    return [
        "report",
        inputs.result,
        "--commitment",
        inputs.commitment,
        "--watermark",
        inputs.watermark,
        "--pubkey",
        inputs.pubkey,
        "--out",
        out,
        *extra,
    ]


def _tampered(inputs, path):
    """The signed result with its p-value changed inside the signed payload."""
    envelope = canonical.read_json(inputs.result)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["test"]["pvalue"] = 1e-9
    statement["predicate"]["verdict"] = "evidenced"
    envelope["payload"] = base64.b64encode(canonical.canonical_bytes(statement)).decode()
    canonical.write_json(path, envelope)
    return path


def test_cli_writes_report_and_prints_its_sha256(report_inputs, tmp_path):
    out = tmp_path / "evidence.html"
    res = _run(*_args(report_inputs, out, "--json"))
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert [s["status"] for s in summary["signatures"]] == ["verified"] * 3


def test_tampered_result_is_refused_with_one_line(report_inputs, tmp_path):
    bad = _tampered(report_inputs, tmp_path / "tampered.json")
    out = tmp_path / "evidence.html"
    res = _run(*_args(report_inputs, out)[:1], bad, *_args(report_inputs, out)[2:])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "signature does not verify" in lines[0]
    assert "--allow-unverified" in lines[0]
    assert not out.exists()


def test_tampered_result_with_allow_unverified_is_marked_red(report_inputs, tmp_path, html_tools):
    bad = _tampered(report_inputs, tmp_path / "tampered.json")
    out = tmp_path / "evidence.html"
    args = _args(report_inputs, out, "--allow-unverified")
    res = _run(args[0], bad, *args[2:])
    assert res.exit_code == 0, res.output
    parsed = html_tools.parse_report(out.read_text(encoding="utf-8"))
    (level, text), *_ = parsed.banners
    assert level == "danger" and text.startswith("UNVERIFIED") and "tampered.json" in text
    assert parsed.check_rows[0][2] == "FAILED"


def test_wrong_key_is_refused(report_inputs, tmp_path):
    other = keys.generate_keypair(tmp_path / "other")
    args = _args(report_inputs, tmp_path / "e.html")
    args[args.index("--pubkey") + 1] = other.public_path
    res = _run(*args)
    assert res.exit_code == 2 and "does not verify" in res.output


def test_missing_public_key_is_refused(report_inputs, tmp_path):
    res = _run(
        "report",
        report_inputs.result,
        "--commitment",
        report_inputs.commitment,
        "--out",
        tmp_path / "e.html",
    )
    assert res.exit_code == 2 and "no public key" in res.output


@pytest.mark.parametrize("flip", [0, 40, -1])
def test_tampered_commitment_is_refused(report_inputs, tmp_path, flip):
    data = bytearray(report_inputs.commitment.read_bytes())
    envelope = json.loads(data)
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[flip] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    bad = tmp_path / "commitment.dsse.json"
    canonical.write_json(bad, envelope)
    args = _args(report_inputs, tmp_path / "e.html")
    args[args.index("--commitment") + 1] = bad
    res = _run(*args)
    assert res.exit_code == 2 and "commitment" in res.output


def test_encrypted_watermark_needs_its_passphrase(report_inputs, tmp_path):
    from verification.watermark_file import read_watermark, seal_watermark

    doc = read_watermark(report_inputs.watermark).plain()
    sealed = tmp_path / "owner.wm"
    sealed.write_bytes(seal_watermark(doc, report_inputs.private_key, passphrase=b"s3cret"))
    (tmp_path / "pass.txt").write_bytes(b"s3cret\n")
    args = _args(report_inputs, tmp_path / "e.html")
    args[args.index("--watermark") + 1] = sealed
    res = _run(*args)
    assert res.exit_code == 2 and "passphrase" in res.output
    res = _run(*args, "--passphrase-file", tmp_path / "pass.txt")
    assert res.exit_code == 0, res.output
    assert "verified  watermark file" in res.output


def _commitment_statement(inputs):
    from protocols import statements

    return statements.verify_statement(
        canonical.read_json(inputs.commitment), inputs.private_key.public_key()
    )


def test_unsigned_commitment_is_refused(report_inputs, tmp_path):
    plain = tmp_path / "commitment.json"
    canonical.write_json(plain, _commitment_statement(report_inputs)["predicate"])
    args = _args(report_inputs, tmp_path / "e.html")
    args[args.index("--commitment") + 1] = plain
    res = _run(*args)
    assert res.exit_code == 2 and "commitment" in res.output and "unsigned" in res.output


def test_commitment_signed_by_someone_else_than_the_named_owner_is_refused(report_inputs, tmp_path):
    from protocols import dsse, statements

    intruder = keys.generate_keypair(tmp_path / "intruder")
    forged = tmp_path / "commitment.dsse.json"
    envelope = statements.sign_statement(
        _commitment_statement(report_inputs), keys.load_private_key(intruder.private_path)
    )
    dsse.write_envelope(forged, envelope)
    args = _args(report_inputs, tmp_path / "e.html", "--pubkey", intruder.public_path)
    args[args.index("--commitment") + 1] = forged
    res = _run(*args)
    assert res.exit_code == 2
    assert f"signed by key {intruder.fingerprint}" in res.output and "names owner key" in res.output


def test_missing_weasyprint_is_one_line_with_the_fix(report_inputs, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint -> ImportError
    res = _run(*_args(report_inputs, tmp_path / "e.html", "--pdf", tmp_path / "e.pdf"))
    assert res.exit_code == 2
    (line,) = res.output.strip().splitlines()
    assert "pip install 'mapguard[pdf]'" in line
    assert not (tmp_path / "e.html").exists() and not (tmp_path / "e.pdf").exists()
