"""``mapguard keygen``: files, modes, fingerprint, passphrase, no silent overwrite."""

from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner

from mapguard._cli import cli
from protocols import keys
from protocols.errors import InputError


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_writes_key_pair_and_prints_fingerprint(tmp_path):
    res = CliRunner().invoke(cli, ["keygen", "--out", str(tmp_path / "owner")])
    assert res.exit_code == 0, res.output
    private, public = tmp_path / "owner.key", tmp_path / "owner.pub"
    assert _mode(private) == 0o600
    fpr = keys.fingerprint(keys.load_public_key(public))
    assert fpr in res.output
    assert keys.fingerprint(keys.public_key_of(keys.load_private_key(private))) == fpr
    assert b"PRIVATE" not in public.read_bytes()


def test_keygen_with_passphrase_file_encrypts_the_key(tmp_path):
    (tmp_path / "pw").write_text("correct horse battery\n")
    args = ["keygen", "--out", str(tmp_path / "o"), "--passphrase-file", str(tmp_path / "pw")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    with pytest.raises(InputError, match="encrypted"):
        keys.load_private_key(tmp_path / "o.key")
    key = keys.load_private_key(tmp_path / "o.key", passphrase=b"correct horse battery")
    assert keys.fingerprint(key.public_key()) in res.output
    assert "correct horse" not in res.output


def test_keygen_refuses_to_overwrite_without_force(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["keygen", "--out", str(tmp_path / "k")]).exit_code == 0
    before = (tmp_path / "k.key").read_bytes()
    res = runner.invoke(cli, ["keygen", "--out", str(tmp_path / "k")])
    assert res.exit_code == 2
    assert "exists" in res.output
    assert (tmp_path / "k.key").read_bytes() == before
    assert runner.invoke(cli, ["keygen", "--out", str(tmp_path / "k"), "--force"]).exit_code == 0
    assert (tmp_path / "k.key").read_bytes() != before


def test_keygen_json_output(tmp_path):
    import json

    res = CliRunner().invoke(cli, ["keygen", "--out", str(tmp_path / "j"), "--json"])
    assert res.exit_code == 0
    info = json.loads(res.output)
    assert info["fingerprint"].startswith("SHA256:") and not info["encrypted"]
