"""Models from outside the zoo, end to end through the CLI (issue 14): a torchvision ``resnet18``
at 224 x 224 and a small ``VisionTransformer`` at 64 x 64, imported from state dicts trained
elsewhere, then protect -> embed -> verify -> report, at the model's own resolution.

The models are random (training them to accuracy at 224 px is minutes of CPU): these tests prove
that every command takes them and that the outputs are what a user would get, not the
watermark's power (``benchmarks.scale`` measures that); the embedding on a random model is
expected to miss its level and must say so (exit 3, NOT_READY.txt).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner
from PIL import Image

from mapguard._cli import cli

FACTORIES = Path(__file__).parent / "models"
CLASSES = ("circle", "square", "stripes")


def _folder(root: Path, *, per_class: int, seed: int) -> Path:
    """Three photo-like classes of mixed sizes and aspect ratios (not square, not the model's)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            w, h = int(rng.integers(70, 150)), int(rng.integers(70, 150))
            yy, xx = np.mgrid[0:h, 0:w]
            shape = [(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(w, h) / 3) ** 2,
                     (abs(xx - w / 2) < w / 4) & (abs(yy - h / 2) < h / 4),
                     (xx // 8) % 2 == 0][c]  # fmt: skip
            pixels = rng.integers(0, 90, (h, w, 3)).astype(np.uint8)
            pixels[shape] = rng.integers(150, 256, 3)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _run(*args: str, code: int | tuple[int, ...] = 0) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    codes = (code,) if isinstance(code, int) else code
    assert result.exit_code in codes, (args[0], result.exit_code, result.output)
    return result.output


def test_resnet18_at_224_from_a_module_prefixed_state_dict(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=3)
    weights = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, weights)
    data = _folder(tmp_path / "src", per_class=8, seed=0)
    target = _folder(tmp_path / "tgt", per_class=4, seed=1)
    model = tmp_path / "model.pt"
    _run("import", weights, "--arch", "torchvision:resnet18", "--num-classes", "3",
         "--input-size", "3x224x224", "--classes-from", data, "--out", model)  # fmt: skip
    verdict = _walk(tmp_path, model, data, target, ())
    assert verdict["suspect"]["format"] == "torch.export"
    assert verdict["queries_used"] == 10 * 6 + 6 + 2
    assert verdict["test"]["n"] == 6 and verdict["test"]["pooled"]["n_keys"] == 10


def test_small_vit_at_64_from_safetensors(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.syspath_prepend(str(FACTORIES))
    sys.modules.pop("mapguard_test_factories", None)
    import mapguard_test_factories as factories

    torch.manual_seed(0)
    net = factories.tiny_vit(num_classes=3)
    weights = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, weights)
    data = _folder(tmp_path / "src", per_class=8, seed=0)
    target = _folder(tmp_path / "tgt", per_class=4, seed=1)
    model = tmp_path / "model.pt"
    _run("import", weights, "--arch", "module:mapguard_test_factories:tiny_vit", "--num-classes",
         "3", "--input-size", "3x64x64", "--out", model)  # fmt: skip
    # the owner's own module: code runs only with --unsafe-load; without it, one line, exit 2
    result = CliRunner().invoke(
        cli,
        [
            "embed",
            str(model),
            "--data",
            str(data),
            "--key",
            str(tmp_path / "none.key"),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 2
    verdict = _walk(tmp_path, model, data, target, ("--unsafe-load",))
    assert verdict["suspect"]["format"] == "torch.export"


def _walk(tmp: Path, model: Path, data: Path, target: Path, unsafe: tuple[str, ...]) -> dict:
    """protect -> keygen -> embed -> verify (the .pt2, in the isolated worker) -> check ->
    report on an imported checkpoint; returns the verify JSON."""
    protected = tmp / "protected.pt"
    out = json.loads(_run("protect", model, "--source", data, "--target", target, "--out",
                          protected, "--epochs", "1", "--batch-size", "8", "--json", "-q",
                          *unsafe))  # fmt: skip
    assert out["masked_layers"], "the protect JSON lists the masked layers"
    _run("keygen", "--out", tmp / "owner")
    wm = tmp / "wm"
    code = CliRunner().invoke(cli, [str(a) for a in (
        "embed", model, "--data", data, "--key", tmp / "owner.key", "--out", wm, "--secrets", "1",
        "--null-keys", "9", "-o", "n_verification=6", "--epochs", "1", "-o", "mask.batch_size=8",
        "-q", *unsafe)]).exit_code  # fmt: skip
    metrics = json.loads((wm / "metrics.json").read_text())
    # exit 3 exactly when the embedding missed its level (a random model usually does)
    assert code == (0 if metrics["ready"] else 3)
    assert (wm / "NOT_READY.txt").exists() == (not metrics["ready"])
    committed = json.loads((wm / "embed-config.json").read_text())
    assert committed["n_secrets"] == 1
    owner = wm / "owner.wm"
    verdict = json.loads(_run("verify", wm / "protected.pt2", "--watermark", owner,
                              "--claim-nonce", "real-models test", "--out", tmp / "r.json",
                              "--key", tmp / "owner.key", "--json", code=(0, 1)))  # fmt: skip
    _run("check", tmp / "r.json", "--pubkey", tmp / "owner.pub", "--watermark", owner)
    _run("report", tmp / "r.json", "--commitment", wm / "commitment.dsse.json", "--pubkey",
         tmp / "owner.pub", "--watermark", owner, "--out", tmp / "evidence.html")  # fmt: skip
    assert "real-models test" in (tmp / "evidence.html").read_text()
    return verdict


@pytest.mark.parametrize("size", [64])
def test_watermark_file_commits_the_side_and_the_grid(tmp_path, size):
    """The committed trigger parameters carry the model's side and the 32-cell grid."""
    from mapguard.watermark import EmbedConfig

    params = EmbedConfig().family_params(10, image_size=size)
    assert params["image_size"] == size and params["grid"] == 32
    assert "grid" not in EmbedConfig().family_params(10)
