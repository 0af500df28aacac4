"""Architecture specs (torchvision:, timm:, module:) in create_model, and checkpoints of them:
library specs reload, a ``module:`` spec (user code) is refused without an explicit opt-in."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from mapguard._errors import ConfigError, ModelFileError
from mapguard.checkpoint import ModelMeta, load_any_model, load_checkpoint, save_checkpoint
from mapguard.models import Normalize, create_model, list_model_specs, list_models

HERE = Path(__file__).parent
VIT = "module:mapguard_test_factories:tiny_vit"


@pytest.fixture
def factories(monkeypatch):
    """The helper module of ``module:`` specs, importable by name."""
    monkeypatch.syspath_prepend(str(HERE))
    import mapguard_test_factories

    mapguard_test_factories.CALLS.clear()
    return mapguard_test_factories


def test_torchvision_spec_keeps_normalize_first() -> None:
    model = create_model("torchvision:resnet18", num_classes=7, mean=(0.1, 0.2, 0.3)).eval()
    assert isinstance(model[0], Normalize)
    assert torch.allclose(model[0].mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    assert type(model[1]).__name__ == "ResNet"
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_unknown_torchvision_name_suggests_close_match() -> None:
    with pytest.raises(ConfigError, match="did you mean 'torchvision:resnet18'") as info:
        create_model("torchvision:resnet81")
    assert "torchvision:, timm:, module:" in str(info.value)


def test_unknown_prefix_lists_prefixes_and_close_match() -> None:
    with pytest.raises(ConfigError, match="prefix 'torchvison:'.*torchvision:, timm:") as e:
        create_model("torchvison:resnet18")
    assert "did you mean 'torchvision:resnet18'" in str(e.value)


def test_unknown_zoo_name_mentions_specs() -> None:
    with pytest.raises(ConfigError, match="did you mean 'vgg_small'.*torchvision:"):
        create_model("vgg_smal")


def test_timm_missing_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'mapguard\[timm\]'"):
        create_model("timm:resnet18")
    assert not any(s.startswith("timm:") for s in list_model_specs())


def test_timm_spec_uses_timm_create_model(monkeypatch) -> None:
    calls = []

    def fake_create(name, *, pretrained, num_classes):
        calls.append((name, pretrained, num_classes))
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))

    fake = types.SimpleNamespace(list_models=lambda: ["tiny_net"], create_model=fake_create)
    monkeypatch.setitem(sys.modules, "timm", fake)
    model = create_model("timm:tiny_net", num_classes=4)
    assert calls == [("tiny_net", False, 4)]
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 4)
    assert "timm:tiny_net" in list_model_specs()
    with pytest.raises(ConfigError, match="did you mean 'timm:tiny_net'"):
        create_model("timm:tiny_nett")


def test_list_model_specs_has_zoo_then_torchvision() -> None:
    specs = list_model_specs(include_timm=False)
    assert specs[: len(list_models())] == list_models()
    assert {"torchvision:resnet18", "torchvision:vit_b_16"} <= set(specs)


def test_module_spec_calls_the_factory(factories) -> None:
    model = create_model(VIT, num_classes=10).eval()
    assert factories.CALLS == [10]
    assert isinstance(model[0], Normalize)
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("module:mapguard_test_factories", "must be 'module:pkg.mod:factory'"),
        ("module:mapguard_test_factories:tiny_vit()", "must be 'module:pkg.mod:factory'"),
        ("module:no_such_module_xyz:f", "cannot import it"),
        ("module:mapguard_test_factories:missing", "cannot import it"),
        ("module:mapguard_test_factories:NOT_CALLABLE", "is not callable"),
        ("module:mapguard_test_factories:not_a_module", "returned dict"),
        ("module:" + "a" * 200 + ":f", "limit 200"),
    ],
)
def test_bad_module_specs(factories, spec: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_model(spec)
    assert needle in str(info.value)


# ---- checkpoints whose arch is a spec ------------------------------------------------------------
def test_checkpoint_of_torchvision_spec_reloads(tmp_path) -> None:
    # regnet computes on its tensors while built, so the meta-device shape check builds it for real
    for arch in ("torchvision:resnet18", "torchvision:regnet_x_400mf"):
        model = create_model(arch, num_classes=3).eval()
        save_checkpoint(model, _meta(arch, 3, (3, 64, 64)), tmp_path / "m.pt", force=True)
        loaded, meta = load_checkpoint(tmp_path / "m.pt")
        assert meta.arch == arch
        x = torch.rand(2, 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))


def test_checkpoint_shape_check_still_refuses_mismatch(tmp_path) -> None:
    model = create_model("torchvision:resnet18", num_classes=3)
    save_checkpoint(model, _meta("torchvision:resnet18", 4, (3, 64, 64)), tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match=r"'1.fc.bias' has shape \[3\], .* needs \[4\]"):
        load_checkpoint(tmp_path / "m.pt")


def test_module_arch_is_refused_without_opt_in(factories, tmp_path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(create_model(VIT, num_classes=10), _meta(VIT, 10, (3, 64, 64)), path)
    factories.CALLS.clear()
    for load in (load_checkpoint, load_any_model):
        with pytest.raises(ModelFileError, match="user code.*refused") as info:
            load(path)
        assert len(str(info.value).splitlines()) == 1
    assert factories.CALLS == []  # the factory never ran
    model, meta = load_checkpoint(path, allow_code=True)
    assert factories.CALLS == [10, 10]  # the meta-device skeleton, then the model
    model2, _ = load_any_model(path, allow_unsafe=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), model2(x))


def test_module_arch_that_cannot_build_on_meta_device_loads(factories, tmp_path) -> None:
    arch = "module:mapguard_test_factories:computes_while_built"
    model = create_model(arch, num_classes=3).eval()
    save_checkpoint(model, _meta(arch, 3, (3, 8, 8)), tmp_path / "m.pt")
    loaded, _ = load_checkpoint(tmp_path / "m.pt", allow_code=True)
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(loaded(x), model(x))


def test_module_arch_refused_before_importing_the_module(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil_factory_mod.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
        "def f(*, num_classes):\n    raise SystemExit(1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "m.pt"
    model = create_model("vgg_tiny")
    save_checkpoint(model, ModelMeta(arch="module:evil_factory_mod:f"), path)
    with pytest.raises(ModelFileError, match="user code"):
        load_checkpoint(path)
    assert not marker.exists()
    assert "evil_factory_mod" not in sys.modules


def _meta(arch: str, n: int, size: tuple[int, int, int]) -> ModelMeta:
    return ModelMeta(
        arch=arch, num_classes=n, classes=tuple(map(str, range(n))), input_size=size,
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
    )  # fmt: skip
