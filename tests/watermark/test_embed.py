"""``embed``: the documented files, atomically; a private watermark; a public commitment."""

from __future__ import annotations

import json
import stat

import pytest

from mapguard.watermark import FILES, embed
from protocols import canonical, dsse, keys, statements
from protocols.errors import OutputExistsError
from verification.watermark_file import read_watermark


def _secret_strings(embedded) -> list[str]:
    """Every secret hex and every trigger position/target string that must stay private."""
    doc = read_watermark(embedded.file("owner.wm")).document
    out = []
    for entry in doc["secrets"]:
        out.append(entry["secret"])
        out.append(entry["secret"][:16])
        out.append(entry["trigger"]["fingerprint"])
    out += [doc["openings"][p]["nonce"] for p in doc["openings"]]
    return out


def test_writes_exactly_the_documented_files(embedded):
    assert sorted(p.name for p in embedded.out.iterdir()) == sorted(FILES)
    assert stat.S_IMODE(embedded.file("owner.wm").stat().st_mode) == 0o600
    assert not list(embedded.out.parent.glob(".wm.*"))  # no staging folder left behind


def test_commitment_verifies_and_names_the_protected_model(embedded):
    env = dsse.read_envelope(embedded.file("commitment.dsse.json"))
    pub = keys.load_public_key(embedded.owner.public)
    stmt = statements.verify_statement(
        env, pub, expected_predicate_type=statements.COMMITMENT_PREDICATE_TYPE
    )
    from mapguard.checkpoint import file_sha256

    subjects = {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]}
    assert subjects["protected.pt"] == file_sha256(embedded.file("protected.pt"))
    assert subjects["protected.pt2"] == file_sha256(embedded.file("protected.pt2"))
    pred = stmt["predicate"]
    assert pred["owner_key_fingerprint"] == embedded.owner.fingerprint
    assert pred["verification"]["n_secrets"] == 3
    assert pred["trigger_family"]["name"] == "targeted_patch"


def test_public_files_hold_no_secret(embedded):
    secrets = _secret_strings(embedded)
    for name in FILES:
        if name == "owner.wm":
            continue
        data = embedded.file(name).read_bytes()
        for s in secrets:
            assert s.encode() not in data, (name, s[:8])
    env = dsse.read_envelope(embedded.file("commitment.dsse.json"))
    payload = dsse.verify_envelope(env, keys.load_public_key(embedded.owner.public))
    text = payload.decode()
    for s in secrets:
        assert s not in text
    pred = canonical.loads(payload)["predicate"]
    assert '"secrets":' not in json.dumps(pred)
    assert '"row"' not in text and '"details"' not in text  # no trigger position or target


def test_watermark_file_opens_its_commitment(embedded):
    from protocols import openings

    wm = read_watermark(embedded.file("owner.wm"))
    env = dsse.read_envelope(embedded.file("commitment.dsse.json"))
    stmt = statements.verify_statement(env, keys.load_public_key(embedded.owner.public))
    openings.check_openings(stmt["predicate"], wm.plain())
    assert wm.commitment_digest == statements.statement_digest(stmt)
    assert list(wm.document["verification_set"]["inline"]["shape"]) == [40, 3, 32, 32]


def test_result_figures_and_self_check(embedded):
    r = embedded.result
    assert r.clean_accuracy_before - r.clean_accuracy_after <= 0.05
    assert r.self_check["evidenced"] and r.self_check["pvalue"] <= 1e-3
    assert r.psnr_db > 10
    metrics = json.loads(embedded.file("metrics.json").read_text())
    assert metrics["self_check"]["pvalue"] == r.self_check["pvalue"]


def test_refuses_existing_output_before_any_work(tiny_checkpoint, mnist_small, owner, embedded):
    before = {p.name: p.stat().st_mtime_ns for p in embedded.out.iterdir()}
    with pytest.raises(OutputExistsError):
        embed(tiny_checkpoint, mnist_small, owner.key(), out=embedded.out, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in embedded.out.iterdir()} == before


def test_failure_leaves_nothing_behind(
    tiny_checkpoint, mnist_small, owner, tmp_path, monkeypatch, tiny_config
):
    from mapguard.watermark import _outputs

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(_outputs, "write_documents", boom)
    cfg = tiny_config(mask=tiny_config().mask.replace(epochs=1, max_steps_per_epoch=1))
    with pytest.raises(RuntimeError, match="disk full"):
        embed(tiny_checkpoint, mnist_small, owner.key(), cfg, out=tmp_path / "wm", progress=False)
    assert list(tmp_path.iterdir()) == []
