"""``embed -o channel.family=pair-preference`` end to end (analysis version 4, issue 15): the
commitment fixes the channel, the watermark file opens it, and ``mapguard verify`` evidences a
student distilled from the protected model (which has lost the triggers) by the channel alone,
only when a trusted timestamp (a real TSA on 127.0.0.1) puts the commitment before the suspect;
the original model is not evidenced."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from mapguard._cli import cli
from mapguard.attacks import AttackConfig, attack_file
from mapguard.watermark import embed
from protocols import keys
from verification.watermark_file import read_watermark

CHANNEL = {"channel.family": "pair-preference", "channel.queries": 1500, "channel.natural": 150,
           "channel.null_keys": 1999, "channel.eps": 3.0, "channel.epochs": 6}  # fmt: skip


@pytest.fixture(scope="module")
def channeled(tiny_checkpoint, mnist_small, tiny_config, tsa, tmp_path_factory):
    """The tiny checkpoint with triggers and the channel, under an owner key of its own (so this
    is attempt 1 whatever else the suite embedded); its commitment time-stamped; a student
    distilled from the protected model."""
    d = tmp_path_factory.mktemp("channel")
    owner = keys.generate_keypair(d / "owner")
    cfg = tiny_config(export=False, alpha=0.05, max_accuracy_drop=0.05).with_options(CHANNEL)
    key = keys.load_private_key(owner.private_path)
    result = embed(tiny_checkpoint, mnist_small, key, cfg, out=d / "wm", progress=False,
                   secret_rng=np.random.default_rng(3))  # fmt: skip
    authority = tsa.Authority.create(d / "tsa")
    with tsa.serve(authority) as (url, _):
        args = ["timestamp", d / "wm" / "commitment.dsse.json", "--tsa", url, "--tsa-cert",
                authority.chain, "--out", d / "commitment.tsr"]  # fmt: skip
        res = CliRunner().invoke(cli, [str(a) for a in args])
        assert res.exit_code == 0, res.output
    attack_file(d / "wm" / "protected.pt", "distill", out=d / "student.pt", data="builtin:mnist",
                config=AttackConfig(epochs=10, n_images=1200), seed=3, progress=False)  # fmt: skip
    order = ["--timestamp", d / "commitment.tsr", "--tsa-cert", authority.chain]
    return d, result, order, owner


def _verify(d, suspect, *extra):  # noqa: ANN001, ANN202
    out = d / f"result-{suspect.stem}-{len(extra)}.json"
    args = ["verify", suspect, "--watermark", d / "wm" / "owner.wm", "--claim-nonce",
            "arbiter-nonce-7", "--out", out, "--force", *extra]  # fmt: skip
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code in (0, 1), res.output
    return res, json.loads(out.read_text())


def test_the_commitment_fixes_the_channel_and_the_file_opens_it(channeled) -> None:
    d, result, _, _ = channeled
    wm = read_watermark(d / "wm" / "owner.wm")
    a = wm.analysis
    assert (a.version, a.channels, a.channel.queries, a.channel.null_keys) == ("4", 2, 1500, 1999)
    statement = json.loads((d / "wm" / "metrics.json").read_text())
    check = statement["channel_self_check"]
    assert check["at_level"] and check["queries"] == 1500, check
    assert result.ready, result.not_ready
    assert json.loads((d / "wm" / "embed-config.json").read_text())["channel"]["eps"] == 3.0


def test_a_distilled_student_is_evidenced_by_the_channel_with_the_time_order(channeled) -> None:
    d, _, order, _ = channeled
    res, doc = _verify(d, d / "student.pt", *order, "--suspect-first-seen", "2099-01-01")
    assert res.exit_code == 0, res.output
    assert doc["verdict"] == "evidenced" and doc["combined"]["by"] == ["channel"], doc["combined"]
    assert doc["channel"]["admissible"] and doc["test"]["alpha"] == 0.025
    assert "by the channel" in res.output and "Bonferroni" in res.output
    # without the certified order the same answers are reported, not counted
    res, doc = _verify(d, d / "student.pt")
    assert res.exit_code == 1 and doc["verdict"] == "not_evidenced", doc["combined"]
    assert not doc["channel"]["admissible"] and "NOT counted" in res.output
    assert doc["queries_used"] > doc["channel"]["queries"] == 1500


def test_the_original_model_is_not_evidenced(channeled, tiny_checkpoint) -> None:
    """Made before any secret existed: neither channel evidences it, time order or not."""
    d, _, order, _ = channeled
    res, doc = _verify(d, tiny_checkpoint, *order, "--suspect-first-seen", "2099-01-01")
    assert res.exit_code == 1 and doc["verdict"] == "not_evidenced", doc["combined"]
    assert doc["channel"]["pvalue"] > 0.025


def test_a_channel_without_its_commitment_is_refused(channeled, tmp_path) -> None:
    """A watermark file whose channel does not open the committed digest stops before any
    query (one line, exit 2)."""
    from verification.watermark_file import seal_watermark

    d, _, _, owner = channeled
    doc = read_watermark(d / "wm" / "owner.wm").plain()
    doc["channel"]["secret"] = "00" * 32
    forged = tmp_path / "forged.wm"
    forged.write_bytes(seal_watermark(doc, keys.load_private_key(owner.private_path)))
    out = tmp_path / "result.json"
    args = ["verify", d / "student.pt", "--watermark", forged, "--claim-nonce", "n", "--out", out]
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 2 and "does not open" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_the_channel_options_are_checked(tiny_config) -> None:
    from mapguard._errors import ConfigError

    with pytest.raises(ConfigError, match="channel.family must be one of"):
        tiny_config().with_options({"channel.family": "cosine"})
    with pytest.raises(ConfigError, match="channel.queries"):
        tiny_config().with_options({"channel.family": "pair-preference", "channel.queries": 0})
    assert "channel" not in tiny_config().to_dict()  # off: recorded as before the channel
    assert dataclasses.replace(tiny_config()).channel.on is False
    with pytest.raises(ConfigError, match="channel.keep_mix"):
        tiny_config().with_options({"channel.family": "pair-preference", "channel.keep_mix": -1})


def test_boundary_mixtures_are_new_images_and_reproducible(mnist_small) -> None:
    """``channel.keep_mix``'s keep source: unlabelled mixtures of two training images, far from
    every single training image, in [0, 1]; the same seed gives the same images, another seed
    others."""
    import torch

    from mapguard.watermark._recipe import images_of, mixture_source

    train = mnist_small[0]
    x = images_of(train, 0)
    src = mixture_source(x, train.labels, 300, seed=5)
    assert src.x.shape == (300, *x.tensor.shape[1:]) and src.y is None
    assert torch.equal(src.x, mixture_source(x, train.labels, 300, seed=5).x)
    assert not torch.equal(src.x, mixture_source(x, train.labels, 300, seed=6).x)
    nearest = torch.cdist(src.x.flatten(1), x.tensor.flatten(1)).min(dim=1).values
    assert float((nearest > 1.0).float().mean()) > 0.9  # not copies of one training image
    assert 0.0 <= float(src.x.min()) and float(src.x.max()) <= 1.0


def test_check_and_report_read_the_combined_verdict(channeled, tmp_path) -> None:
    """A signed version-4 result passes ``check`` against the watermark; changing its channel
    p-value (re-signed by the same key) does not; the report shows both channels."""
    from protocols import canonical, dsse, statements
    from verification.check import check

    d, _, order, owner = channeled
    key = keys.load_private_key(owner.private_path)
    out = tmp_path / "signed.json"
    args = ["verify", d / "student.pt", "--watermark", d / "wm" / "owner.wm", "--claim-nonce",
            "arbiter-nonce-7", "--out", out, "--key", owner.private_path, *order,
            "--suspect-first-seen", "2099-01-01"]  # fmt: skip
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    wm = d / "wm" / "owner.wm"
    good = check(out, owner.public_path, wm)
    assert good.ok and "channel p" in good.items[-1].detail, good.items
    statement = json.loads(dsse.verify_envelope(
        dsse.parse_envelope(out.read_bytes()), key.public_key(),
        expected_payload_type=statements.PAYLOAD_TYPE))  # fmt: skip
    statement["predicate"]["channel"]["pvalue"] = 1e-4
    bad_path = tmp_path / "bad.json"
    canonical.write_json(bad_path, statements.sign_statement(statement, key))
    bad = check(bad_path, owner.public_path, wm)
    assert not bad.ok and "combined p-value" in bad.items[-1].detail, bad.items
    html = tmp_path / "report.html"
    args = ["report", out, "--commitment", d / "wm" / "commitment.dsse.json", "--watermark", wm,
            "--pubkey", owner.public_path, "--out", html]  # fmt: skip
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    text = html.read_text()
    assert "keyed pair preferences" in text and "2 x min(trigger, counted channel)" in text


def test_a_remote_suspect_answers_the_channel_as_the_file_does(channeled, oip_server, tmp_path):
    """The student behind an Open Inference Protocol endpoint on 127.0.0.1: the remote budget
    covers the channel's boundary queries, the trigger and channel p-values equal the local
    file's, every image sent is in the query log, and ``check`` binds the log."""
    from mapguard.checkpoint import load_checkpoint

    d, _, order, owner = channeled
    first = [*order, "--suspect-first-seen", "2099-01-01"]
    _, local = _verify(d, d / "student.pt", *first)
    module, _ = load_checkpoint(d / "student.pt")
    out = tmp_path / "remote.json"
    with oip_server(module.eval(), side=32, num_classes=10) as server:
        args = ["verify", server.url, "--watermark", d / "wm" / "owner.wm", "--claim-nonce",
                "arbiter-nonce-7", "--out", out, "--key", owner.private_path, *first,
                "--batch-size", 256]  # fmt: skip
        res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    from protocols import statements

    pred = statements.decode_unverified(json.loads(out.read_text()), source="result")["predicate"]
    assert pred["channel"]["pvalue"] == local["channel"]["pvalue"]
    assert pred["test"]["pvalue"] == local["test"]["pvalue"]
    assert pred["combined"] == local["combined"] and pred["verdict"] == "evidenced"
    block = pred["query_log"]
    assert block["queries"] == server.state.images and block["failures"] == 0
    assert block["queries"] >= local["queries_used"] and local["channel"]["queries"] == 1500
    from verification.check import check

    assert check(out, owner.public_path, d / "wm" / "owner.wm").ok
