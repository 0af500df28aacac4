"""``--amp`` (bf16 autocast + channels-last, CUDA only; ``mapguard._device``): refused in one line
on the CPU before any work, and the helpers the training loops call change nothing off CUDA."""

from __future__ import annotations

import contextvars

import pytest
import torch
from click.testing import CliRunner

from mapguard import _device
from mapguard._cli import cli
from mapguard._errors import ConfigError
from mapguard.models import create_model


def _commands(ckpt, owner, out) -> dict[str, list[str]]:
    data = ["--data", "builtin:mnist"]
    roles = ["--source", "builtin:mnist", "--target", "builtin:mnistm"]
    return {
        "train": ["train", *data, "--arch", "vgg_tiny", "--out", str(out)],
        "protect": ["protect", str(ckpt), *roles, "--out", str(out)],
        "embed": ["embed", str(ckpt), *data, "--key", str(owner.private), "--out", str(out)],
        "attack": ["attack", str(ckpt), "--kind", "ftal", *data, "--out", str(out)],
    }


@pytest.mark.parametrize("command", ["train", "protect", "embed", "attack"])
def test_amp_is_refused_on_the_cpu_in_one_line_before_any_work(
    command, tiny_checkpoint, owner, tmp_path, monkeypatch
):
    def no_data(*args, **kwargs):
        raise AssertionError("data were read before --amp was refused")

    for name in ("load_data", "load_or_stream", "open_data"):
        monkeypatch.setattr(f"mapguard.data.{name}", no_data)
    out = tmp_path / "out"
    args = _commands(tiny_checkpoint, owner, out)[command]
    r = CliRunner().invoke(cli, [*args, "--device", "cpu", "--amp"])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "--amp" in lines[0] and "CUDA device" in lines[0], r.output
    assert not out.exists()


def test_mixed_precision_checks_the_device_and_is_scoped():
    with pytest.raises(ConfigError, match="needs a CUDA device; got 'cpu'"):
        with _device.mixed_precision("cpu"):
            pass
    with _device.mixed_precision("cpu", enabled=False):  # off: nothing checked or changed
        assert not _device.amp_enabled()
    assert not _device.amp_enabled()


def test_autocast_and_channels_last_only_act_on_cuda():
    """Even with the setting on (as under --amp), a CPU loop gets its tensors and model as they
    are: the CPU results cannot change."""

    def inside() -> None:
        _device._AMP.set(True)
        assert _device.amp_enabled()
        cpu = torch.device("cpu")
        model = create_model("vgg_tiny").eval()
        assert _device.fast_layout(model, cpu) is model
        x = torch.rand(2, 3, 32, 32)
        assert _device.fast_layout(x, cpu) is x
        with _device.autocast(cpu):
            y = model(torch.rand(2, 3, 32, 32))
        assert y.dtype == torch.float32

    contextvars.copy_context().run(inside)
    assert not _device.amp_enabled()  # the setting never leaked out of its context


def test_learn_mask_amp_is_refused_off_cuda():
    from mapguard.masking import TensorSource, learn_mask

    keep = TensorSource(torch.rand(8, 3, 32, 32), seed=0, name="keep")
    degrade = TensorSource(torch.rand(8, 3, 32, 32), torch.zeros(8, dtype=torch.long), seed=1)
    with pytest.raises(ConfigError, match="--amp"):
        learn_mask(create_model("vgg_tiny").eval(), keep=keep, degrade=degrade, device="cpu",
                   progress=False, amp=True)  # fmt: skip
