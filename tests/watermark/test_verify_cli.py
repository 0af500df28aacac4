"""``mapguard verify``: verdicts and exit codes, formats, bad suspects, no secret in any output."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from mapguard._cli import cli
from verification.check import check
from verification.watermark_file import read_watermark


def _run(*args):
    args = [*map(str, args)]
    if "--claim-nonce" not in args and "--exploratory" not in args:
        args += ["--claim-nonce", "test-claim"]
    return CliRunner().invoke(cli, ["verify", *args])


def _secrets(embedded) -> list[str]:
    doc = read_watermark(embedded.file("owner.wm")).document
    return [e["secret"] for e in doc["secrets"]] + [
        doc["openings"][p]["nonce"] for p in doc["openings"]
    ]


def _assert_no_secret(embedded, *texts):
    for secret in _secrets(embedded):
        for text in texts:
            assert secret not in text and secret[:16] not in text


def test_protected_model_is_evidenced_signed_and_checkable(embedded, tmp_path):
    out = tmp_path / "result.json"
    res = _run(
        embedded.file("protected.pt"),
        "--watermark",
        embedded.file("owner.wm"),
        "--key",
        embedded.owner.private,
        "--out",
        out,
    )
    assert res.exit_code == 0, res.output
    assert "EVIDENCED" in res.output
    assert check(out, embedded.owner.public, embedded.file("owner.wm")).ok
    _assert_no_secret(embedded, res.output, out.read_text())


def test_labels_only_and_export_format(embedded, tmp_path):
    out = tmp_path / "r.json"
    res = _run(
        embedded.file("protected.pt2"),
        "--watermark",
        embedded.file("owner.wm"),
        "--json",
        "--out",
        out,
    )
    assert res.exit_code == 0, res.output
    predicate = json.loads(out.read_text())
    assert json.loads(res.output) == predicate
    assert predicate["query_mode"] == "labels" and predicate["verdict"] == "evidenced"
    assert predicate["suspect"]["format"] == "torch.export"
    assert predicate["test"]["pvalue"] <= 1e-3
    assert predicate["queries_used"] == 2 + 40 * (1 + 3 + 3 * 19)
    _assert_no_secret(embedded, res.output, out.read_text())
    assert '"row"' not in out.read_text()  # trigger positions stay private too


def test_independent_model_is_not_evidenced(embedded, tmp_path):
    out = tmp_path / "r.json"
    res = _run(embedded.original, "--watermark", embedded.file("owner.wm"), "--out", out)
    assert res.exit_code == 1, res.output
    assert json.loads(out.read_text())["verdict"] == "not_evidenced"
    _assert_no_secret(embedded, res.output)


def test_query_budget(embedded, tmp_path):
    out = tmp_path / "r.json"
    res = _run(
        embedded.file("protected.pt"),
        "--watermark",
        embedded.file("owner.wm"),
        "--queries",
        1000,
        "--exploratory",
        "--json",
        "--out",
        out,
    )
    predicate = json.loads(out.read_text())
    assert predicate["queries_used"] <= 1000 and predicate["test"]["n"] == 16, res.output
    assert predicate["exploratory"] is True and predicate["claim_nonce"].startswith("explorat")
    assert "EXPLORATORY" in json.dumps(predicate) or predicate["exploratory"]
    small = _run(
        embedded.file("protected.pt"),
        "--watermark",
        embedded.file("owner.wm"),
        "--queries",
        10,
        "--exploratory",
        "--out",
        tmp_path / "x.json",
    )
    assert small.exit_code == 2 and "too small" in small.output


def test_suspect_with_other_class_count_is_an_error(embedded, tmp_path):
    from mapguard.checkpoint import ModelMeta, save_checkpoint
    from mapguard.models import create_model

    path = tmp_path / "five.pt"
    save_checkpoint(
        create_model("vgg_tiny", num_classes=5),
        ModelMeta(arch="vgg_tiny", num_classes=5, classes=tuple("abcde")),
        path,
    )
    res = _run(path, "--watermark", embedded.file("owner.wm"), "--out", tmp_path / "r.json")
    assert res.exit_code == 2
    assert "5 classes" in res.output and "10" in res.output
    assert not (tmp_path / "r.json").exists()


def test_suspect_with_other_input_size_is_an_error(embedded, tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10)).eval()
    program = torch.export.export(net, (torch.rand(2, 1, 28, 28),))
    path = tmp_path / "mnist28.pt2"
    torch.export.save(program, str(path))
    res = _run(path, "--watermark", embedded.file("owner.wm"), "--out", tmp_path / "r.json")
    assert res.exit_code == 2
    assert "input" in res.output and "32" in res.output


@pytest.mark.parametrize("flag", [[], ["--unsafe-load"], ["--unsafe-pickle"]])
def test_pickles_run_isolated_unless_unsafe_load(embedded, tmp_path, flag):
    from mapguard.checkpoint import load_checkpoint

    model, _ = load_checkpoint(embedded.file("protected.pt"))
    path = tmp_path / "stolen.pkl"
    torch.save(model, path)
    out = tmp_path / "r.json"
    res = _run(path, "--watermark", embedded.file("owner.wm"), *flag, "--out", out)
    assert res.exit_code == 0, res.output
    isolation = json.loads(out.read_text())["suspect"]["isolation"]
    if flag:  # the old spelling --unsafe-pickle is kept as a hidden alias
        assert isolation.startswith("UNSAFE LOAD")
    else:
        assert isolation.startswith("isolated worker")


def test_existing_output_needs_force(embedded, tmp_path):
    out = tmp_path / "r.json"
    out.write_text("{}")
    res = _run(
        embedded.file("protected.pt"), "--watermark", embedded.file("owner.wm"), "--out", out
    )
    assert res.exit_code == 2 and "exists" in res.output
    assert out.read_text() == "{}"


def test_labels_only_still_checks_the_class_count(embedded, tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5)).eval()
    path = tmp_path / "five.pt2"
    torch.export.save(torch.export.export(net, (torch.rand(2, 3, 32, 32),)), str(path))
    out = tmp_path / "r.json"
    res = _run(path, "--watermark", embedded.file("owner.wm"), "--out", out)
    assert res.exit_code == 2, res.output  # not 1 ("not evidenced"): the suspect does not fit
    assert "outputs 5 classes, the watermark has 10" in res.output
    assert not out.exists()


def test_a_hanging_suspect_hits_the_time_limit(embedded, tmp_path):
    import time

    class Spin(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            i = 0
            while i >= 0:
                i = (i + 1) % 1000
            return x.flatten(1)[:, :10]

    path = tmp_path / "spin.ts"
    torch.jit.script(Spin()).save(str(path))
    out = tmp_path / "r.json"
    start = time.monotonic()
    res = _run(path, "--watermark", embedded.file("owner.wm"), "--timeout", "3", "--out", out)
    assert res.exit_code == 2 and "time limit (3" in res.output, res.output
    assert time.monotonic() - start < 40
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    "option", [["--labels-only"], ["--queries", "1000"], ["--alpha", "0.5"], ["--null-keys", "5"]]
)
def test_options_that_change_the_pvalue_need_exploratory(embedded, tmp_path, option):
    out = tmp_path / "r.json"
    res = _run(embedded.file("protected.pt"), "--watermark", embedded.file("owner.wm"), *option,
               "--out", out)  # fmt: skip
    assert res.exit_code == 2 and "would change the committed analysis" in res.output
    assert not out.exists()


def test_verify_needs_a_claim_nonce_and_records_it(embedded, tmp_path):
    out = tmp_path / "r.json"
    args = [embedded.file("protected.pt"), "--watermark", embedded.file("owner.wm"), "--out", out]
    res = CliRunner().invoke(cli, ["verify", *map(str, args)])
    assert res.exit_code == 2 and "--claim-nonce" in res.output and not out.exists()
    res = _run(*args, "--claim-nonce", "beacon round 1234: 9f2c")
    predicate = json.loads(out.read_text())
    assert predicate["claim_nonce"] == "beacon round 1234: 9f2c"
    assert predicate["exploratory"] is False
    assert predicate["analysis"]["test"] == "pooled-rank-sum"  # the recipe's default
    assert predicate["analysis"]["mode_rule"] == "labels" and predicate["query_mode"] == "labels"
