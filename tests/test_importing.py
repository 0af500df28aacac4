"""Importing models trained elsewhere: state dicts (nested, prefixed) and safetensors become
checkpoints whose outputs equal the original's; unsafe or unfitting weights are refused in one
line and nothing is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from mapguard._errors import ConfigError, DataError, ModelFileError, OutputExistsError
from mapguard.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from mapguard.importing import IMAGENET_MEAN, IMAGENET_STD, folder_classes, import_model
from mapguard.models import Normalize, create_model

HERE = Path(__file__).parent
SMALL = {"arch": "vgg_tiny", "num_classes": 10, "input_size": (3, 32, 32)}


def _state(body: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().clone() for k, v in body.state_dict().items()}


def _same_outputs(original, mean, std, path: Path, size, **load) -> None:
    """The checkpoint at ``path`` on pixels in [0, 1] equals ``original`` on normalised ones."""
    loaded, _ = load_checkpoint(path, **load)
    x = torch.rand(2, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = original.eval()(Normalize(mean, std)(x))
        assert torch.allclose(loaded(x), want, atol=1e-5)


def _tiny_body() -> torch.nn.Module:
    torch.manual_seed(1)
    return create_model("vgg_tiny")[1]


def test_torchvision_resnet18_with_module_prefix(tmp_path) -> None:
    torch.manual_seed(0)
    original = torchvision.models.resnet18(weights=None, num_classes=10)
    for m in original.modules():  # non-trivial BN statistics, so eval mode matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save({"state_dict": _state(original, "module."), "epoch": 7}, tmp_path / "w.pth")
    out = tmp_path / "m.pt"
    r = import_model(tmp_path / "w.pth", arch="torchvision:resnet18", num_classes=10, out=out)
    assert (r.stripped_prefix, r.source_format, r.meta.input_size) == ("module.", "torch",
                                                                        (3, 224, 224))  # fmt: skip
    assert r.parameters == sum(p.numel() for p in original.parameters())
    assert r.meta.mean == IMAGENET_MEAN and r.meta.extra["imported_from"] == "w.pth"
    _same_outputs(original, IMAGENET_MEAN, IMAGENET_STD, out, (3, 224, 224))


def test_vit_from_user_factory_via_safetensors(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(HERE / "models"))
    torch.manual_seed(0)
    original = torchvision.models.VisionTransformer(
        image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128,
        num_classes=10,
    )  # fmt: skip
    save_file(_state(original), str(tmp_path / "w.bin"), metadata={"format": "pt"})  # not mapguard
    arch = "module:mapguard_test_factories:tiny_vit"
    out = tmp_path / "m.pt"
    r = import_model(tmp_path / "w.bin", arch=arch, num_classes=10, input_size=(3, 64, 64),
                     out=out)  # fmt: skip
    assert r.source_format == "safetensors" and r.stripped_prefix == ""
    with pytest.raises(ModelFileError, match="user code"):
        load_checkpoint(out)
    _same_outputs(original, IMAGENET_MEAN, IMAGENET_STD, out, (3, 64, 64), allow_code=True)


def test_mapguard_checkpoint_as_weights(tmp_path) -> None:
    model = create_model("vgg_tiny", mean=(0.5,) * 3, std=(0.25,) * 3)
    save_checkpoint(model, ModelMeta(arch="vgg_tiny"), tmp_path / "src.pt")
    norm = {"mean": (0.5,) * 3, "std": (0.25,) * 3}
    r = import_model(tmp_path / "src.pt", **SMALL, **norm, out=tmp_path / "m.pt")
    assert r.source_format == "mapguard-checkpoint"
    _same_outputs(model[1], norm["mean"], norm["std"], tmp_path / "m.pt", (3, 32, 32))
    with pytest.raises(ConfigError, match="normalising with mean \\[0.5, 0.5, 0.5\\]"):
        import_model(tmp_path / "src.pt", **SMALL, out=tmp_path / "m2.pt")  # ImageNet defaults
    assert not (tmp_path / "m2.pt").exists()


@pytest.mark.parametrize(
    ("wrap", "prefix"),
    [
        (lambda s: {"model": s}, ""),
        (lambda s: {"model_state_dict": s, "optimizer": {"lr": 0.1}}, ""),
        (lambda s: {"state_dict": {"model." + k: v for k, v in s.items()}}, "model."),
        (lambda s: {"_orig_mod." + k: v for k, v in s.items()}, "_orig_mod."),
        (lambda s: {"module._orig_mod." + k: v for k, v in s.items()}, "module._orig_mod."),
    ],
)
def test_nested_and_prefixed_state_dicts(tmp_path, wrap, prefix: str) -> None:
    body = _tiny_body()
    torch.save(wrap(_state(body)), tmp_path / "w.pt")
    r = import_model(tmp_path / "w.pt", **SMALL, out=tmp_path / "m.pt")
    assert r.stripped_prefix == prefix
    _same_outputs(body, IMAGENET_MEAN, IMAGENET_STD, tmp_path / "m.pt", (3, 32, 32))


class _Payload:
    """An arbitrary class: unpickling it would touch ``marker`` (its ``__setstate__`` runs)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).touch()


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("payload", [_Payload, lambda m: _System(f"touch {m}")])
def test_pickle_with_objects_is_refused_unopened(tmp_path, payload) -> None:
    marker = tmp_path / "ran"
    weights = tmp_path / "w.pth"
    torch.save({"state_dict": _state(_tiny_body()), "extra": payload(str(marker))}, weights)
    with pytest.raises(ModelFileError, match="refused without unpickling") as info:
        import_model(weights, **SMALL, out=tmp_path / "m.pt")
    assert len(str(info.value).splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "m.pt").exists()


def test_wrong_keys_name_first_missing_and_unexpected(tmp_path) -> None:
    state = _state(_tiny_body())
    state["head.weight"] = state.pop("0.weight")
    state["head.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ModelFileError) as info:
        import_model(tmp_path / "w.pt", **SMALL, out=tmp_path / "m.pt")
    assert "1 missing (first '0.weight'), 2 unexpected (first 'head.extra')" in str(info.value)
    assert not (tmp_path / "m.pt").exists()


def test_wrong_shapes_and_non_tensor_entries(tmp_path) -> None:
    torch.save(_state(create_model("vgg_tiny", num_classes=5)[1]), tmp_path / "w.pt")
    with pytest.raises(ModelFileError, match=r"'15.bias' has shape \[5\], the arch"):
        import_model(tmp_path / "w.pt", **SMALL, out=tmp_path / "m.pt")
    torch.save({**_state(_tiny_body()), "epoch": 3}, tmp_path / "w.pt")
    with pytest.raises(ModelFileError, match="entry 'epoch' is int, not a tensor"):
        import_model(tmp_path / "w.pt", **SMALL, out=tmp_path / "m.pt")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_code_formats_are_not_weights(tmp_path) -> None:
    torch.jit.script(_tiny_body()).save(str(tmp_path / "w.pt"))
    with pytest.raises(ModelFileError, match="is TorchScript; import takes a state dict"):
        import_model(tmp_path / "w.pt", **SMALL, out=tmp_path / "m.pt")


def test_input_size_the_model_cannot_take(tmp_path) -> None:
    torch.save(_state(_tiny_body()), tmp_path / "w.pt")
    with pytest.raises(ConfigError, match="'vgg_tiny' cannot take input size 3x64x64"):
        import_model(tmp_path / "w.pt", **{**SMALL, "input_size": (3, 64, 64)},
                     out=tmp_path / "m.pt")  # fmt: skip
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"input_size": (3, 32)}, "input_size must be 3 integers"),
        ({"input_size": (1, 32, 32)}, "one value per input channel (1)"),
        ({"num_classes": 1}, "num_classes must be an integer"),
        ({"std": (0.2, 0.0, 0.2)}, "std values must be > 0"),
        ({"mean": (0.5, float("nan"), 0.5)}, "finite"),
        ({"classes": ("a", "b")}, "2 class names for num_classes 10"),
        ({"arch": "torchvision:resnet81"}, "did you mean 'torchvision:resnet18'"),
    ],
)
def test_bad_options(tmp_path, options, needle: str) -> None:
    torch.save(_state(_tiny_body()), tmp_path / "w.pt")
    with pytest.raises(ConfigError) as info:
        import_model(tmp_path / "w.pt", **{**SMALL, **options}, out=tmp_path / "m.pt")
    assert needle in str(info.value)
    assert not (tmp_path / "m.pt").exists()


def test_existing_output_needs_force(tmp_path) -> None:
    torch.save(_state(_tiny_body()), tmp_path / "w.pt")
    (tmp_path / "m.pt").write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        import_model(tmp_path / "w.pt", **SMALL, out=tmp_path / "m.pt")
    assert (tmp_path / "m.pt").read_bytes() == b"keep"
    import_model(tmp_path / "w.pt", **SMALL, out=tmp_path / "m.pt", force=True)
    assert load_checkpoint(tmp_path / "m.pt")[1].arch == "vgg_tiny"


def test_folder_classes_follow_the_data_loader(tmp_path) -> None:
    for name in ("zebra", "ant", ".cache"):
        (tmp_path / "flat" / name).mkdir(parents=True)
    assert folder_classes(tmp_path / "flat") == ("ant", "zebra")
    for part, name in (("train", "b"), ("train", "a"), ("test", "a")):
        (tmp_path / "split" / part / name).mkdir(parents=True)
    assert folder_classes(tmp_path / "split") == ("a", "b")
    with pytest.raises(DataError, match="does not exist"):
        folder_classes(tmp_path / "nope")
