"""Issue 11: a suspect file never runs code on the arbiter's machine, whatever command reads it.

Each attack file is built in the test from the watermarked model (``MaliciousFiles`` in
tests/_malicious.py; tests/verification/_backends/test_worker.py proves each one writes its marker
when loaded in-process). Every command that reads a model must either answer correctly through the
isolated worker or refuse with exit code 2 and one line, and the marker must never appear.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from mapguard._cli import cli

ATTACKS = ["pt2_sample_inputs", "pt2_weights", "torchscript_setstate", "torchscript_forward"]


def _run(*args):
    return CliRunner().invoke(cli, [*map(str, args)])


@pytest.fixture(scope="module")
def protected(embedded):
    from mapguard.checkpoint import load_checkpoint

    return load_checkpoint(embedded.file("protected.pt"))[0]


def _attack(malicious, name, model, tmp_path):
    marker = tmp_path / f"{name}.marker"
    ext = ".pt2" if name.startswith("pt2") else ".ts"
    return getattr(malicious, name)(model, tmp_path / f"suspect{ext}", marker), marker


def _one_line_error(res) -> bool:
    lines = res.output.strip().splitlines()
    return res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("mapguard: error:")


@pytest.mark.parametrize("name", ATTACKS)
def test_verify_contains_attack_files(name, embedded, protected, tmp_path, malicious):
    path, marker = _attack(malicious, name, protected, tmp_path)
    out = tmp_path / "result.json"
    wm = embedded.file("owner.wm")
    res = _run("verify", path, "--watermark", wm, "--claim-nonce", "c1", "--out", out)
    assert not marker.exists()
    if name.startswith("pt2"):  # the payload fails silently; the model answers as it is
        assert res.exit_code == 0, res.output
        assert "EVIDENCED" in res.output
        assert json.loads(out.read_text())["suspect"]["isolation"].startswith("isolated worker")
    else:  # the payload itself needs a write: the load fails in the sandbox
        assert _one_line_error(res), res.output
        assert "Permission denied" in res.output
        assert not out.exists()


@pytest.mark.parametrize("name", ATTACKS)
def test_other_commands_contain_attack_files(name, protected, tmp_path, malicious):
    path, marker = _attack(malicious, name, protected, tmp_path)
    res = _run("evaluate", path, "--data", "builtin:mnist", "--quiet")
    assert res.exit_code == 0 if name.startswith("pt2") else _one_line_error(res), res.output
    refused = [
        ("synthesize", path, "--n", "4", "--out", tmp_path / "syn", "--quiet"),
        ("attack", path, "--kind", "ftal", "--data", "builtin:mnist", "--out", tmp_path / "a.pt"),
        ("protect", path, "--source", "builtin:mnist", "--target", "builtin:mnistm",
         "--out", tmp_path / "p.pt"),
    ]  # fmt: skip
    for args in refused:
        res = _run(*args)
        assert _one_line_error(res), (args[0], res.output)
        assert "runs code" in res.output or "not a mapguard checkpoint" in res.output
    assert not marker.exists()
    assert not (tmp_path / "syn").exists() and not (tmp_path / "a.pt").exists()


def test_benign_code_formats_give_the_checkpoints_pvalue(embedded, protected, tmp_path):
    from verification.backends import ModuleBackend, load_suspect
    from verification.verify import VerifyConfig, verify
    from verification.watermark_file import read_watermark, watermark_spec

    spec = watermark_spec(read_watermark(embedded.file("owner.wm")))
    config = VerifyConfig(null_keys_per_secret=19, null_seed="fixed-for-this-test")
    ts = tmp_path / "protected.ts"
    torch.jit.trace(protected, torch.rand(2, 3, 32, 32)).save(str(ts))
    results = [verify(ModuleBackend(protected), spec, config)]
    for path in (embedded.file("protected.pt2"), ts):
        with load_suspect(path, num_classes=10) as backend:
            assert backend.isolation.startswith("isolated worker")
            results.append(verify(backend, spec, config))
    assert len({r.pvalue for r in results}) == 1
    assert len({tuple(r.ranks) for r in results}) == 1
    assert results[0].evidenced


def test_mapguards_own_export_evaluates_and_synthesizes(embedded, tmp_path):
    pt2 = embedded.file("protected.pt2")
    res = _run("evaluate", pt2, "--data", "builtin:mnist", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["accuracy"]["builtin:mnist"]["accuracy"] > 0.5
    res = _run("synthesize", pt2, "--n", "4", "--steps", "2", "--out", tmp_path / "s", "--quiet")
    assert _one_line_error(res) and "--unsafe-load" in res.output
    res = _run("synthesize", pt2, "--n", "4", "--steps", "2", "--out", tmp_path / "s",
               "--quiet", "--unsafe-load", "--no-cache")  # fmt: skip
    assert res.exit_code == 0, res.output


def test_unsafe_load_is_stamped_in_the_result(embedded, tmp_path):
    out = tmp_path / "r.json"
    args = ("--watermark", embedded.file("owner.wm"), "--out", out, "--unsafe-load",
            "--claim-nonce", "c1")  # fmt: skip
    res = _run("verify", embedded.file("protected.pt2"), *args)
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["suspect"]["isolation"].startswith("UNSAFE LOAD")
    assert "UNSAFE LOAD" in res.output


def test_onnx_export_gives_the_checkpoints_pvalue(embedded, tmp_path):
    # Issue 16: an owner who ships ONNX. The .onnx (onnxruntime in the isolated worker) and the
    # protected.pt (in-process) get the same p-value for one watermark and claim nonce.
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from mapguard.watermark import verify_suspect

    onnx = tmp_path / "protected.onnx"
    res = _run("export-onnx", embedded.file("protected.pt"), "--out", onnx)
    assert res.exit_code == 0 and "ONNX" in res.output, res.output
    wm = embedded.file("owner.wm")
    reports = [
        verify_suspect(p, wm, claim_nonce="c1") for p in (embedded.file("protected.pt"), onnx)
    ]
    checkpoint, exported = (r.result for r in reports)
    assert reports[1].predicate["suspect"]["isolation"].startswith("isolated worker")
    assert reports[1].predicate["suspect"]["format"] == "onnx"
    assert exported.pvalue == checkpoint.pvalue and exported.evidenced
    assert tuple(exported.ranks) == tuple(checkpoint.ranks)


def test_verify_refuses_an_onnx_file_reading_external_data(embedded, tmp_path, malicious):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"ARBITER-PRIVATE-KEY-0123456789abcdefXYZ!")
    path = malicious.onnx_external_data(tmp_path / "suspect.onnx", "../../../" + str(secret))
    out = tmp_path / "result.json"
    wm = embedded.file("owner.wm")
    res = _run("verify", path, "--watermark", wm, "--claim-nonce", "c1", "--out", out)
    assert _one_line_error(res) and "references external data" in res.output, res.output
    assert "ARBITER" not in res.output and not out.exists()
