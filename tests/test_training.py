"""``train_source`` is seeded without touching the global generator (and trains any arch at its own
side); the class-count probe; the augmentation is the 32-only code's at 32."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mapguard._errors import ConfigError, ModelFileError
from mapguard.checkpoint import load_checkpoint
from mapguard.training import augment_batch, probe_num_classes, train_source


def test_train_source_repeats_and_leaves_the_global_generator_alone(tmp_path) -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    runs = [
        train_source("builtin:optdigits", arch="vgg_tiny", out=tmp_path / f"{i}.pt", epochs=1,
                     seed=5, progress=False)
        for i in range(2)
    ]  # fmt: skip
    assert torch.equal(torch.get_rng_state(), state)
    assert runs[0]["weights_sha256"] == runs[1]["weights_sha256"]
    _, meta = load_checkpoint(tmp_path / "0.pt")
    assert meta.extra["trained_on"] == "builtin:optdigits" and meta.num_classes == 10


def test_probe_counts_classes_in_eval_mode_and_refuses_foreign_models(tiny_model) -> None:
    tiny_model.train()
    try:
        assert probe_num_classes(tiny_model) == 10 and tiny_model.training
    finally:
        tiny_model.eval()
    with pytest.raises(ModelFileError, match="does not accept 3x32x32"):
        probe_num_classes(nn.Linear(5, 3))
    with pytest.raises(ModelFileError, match="expected \\[N, classes >= 2\\]"):
        probe_num_classes(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1)))


def _augment_32_only(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``augment_batch`` as it was before image sides other than 32 (verbatim, commit 4bdc8d8)."""
    n = x.shape[0]
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    dx, dy = torch.randint(0, 5, (2,), generator=generator).tolist()
    x = padded[:, :, dy : dy + 32, dx : dx + 32]
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    bright = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + bright).clamp(0, 1)


def test_augment_is_the_32_only_code_at_32_and_keeps_any_side() -> None:
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    old, new = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(4):  # the generators stay in step, batch after batch
        assert torch.equal(augment_batch(x, new), _augment_32_only(x, old))
    # at 64 the crop window is the batch's own side and a shift reaches up to 64 // 16 = 4 px
    line = torch.zeros(1, 3, 64, 64)
    line[..., 32] = 1.0  # one bright column: where it lands after the crop is the shift
    gen, shifts = torch.Generator().manual_seed(0), set()
    for _ in range(80):
        out = augment_batch(line, gen)
        assert out.shape == (1, 3, 64, 64)
        shifts.add(int(out[0, 0, 10].argmax()) - 32)
    assert shifts == set(range(-4, 5))


def test_probe_at_the_models_side(model_64) -> None:
    assert probe_num_classes(model_64, size=64) == 10
    with pytest.raises(ModelFileError, match="does not accept 3x64x64"):
        probe_num_classes(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)), size=64)


def test_train_source_at_64_records_the_input_size(tmp_path) -> None:
    out = tmp_path / "m.pt"
    summary = train_source("builtin:optdigits", arch="torchvision:shufflenet_v2_x0_5", out=out,
                           epochs=1, size=64, progress=False)  # fmt: skip
    model, meta = load_checkpoint(out)
    assert summary["size"] == 64 and meta.input_size == (3, 64, 64)
    assert meta.arch == "torchvision:shufflenet_v2_x0_5"
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 10)


def test_train_source_refuses_a_side_the_arch_cannot_take(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="does not accept 3x64x64"):
        train_source("builtin:optdigits", arch="vgg_tiny", out=tmp_path / "m.pt", size=64,
                     progress=False)  # fmt: skip
    assert not (tmp_path / "m.pt").exists()
    with pytest.raises(ConfigError, match="size must be"):
        train_source("builtin:optdigits", arch="vgg_tiny", out=tmp_path / "m.pt", size=4,
                     progress=False)  # fmt: skip
