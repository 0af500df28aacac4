"""Model zoo: every registered architecture builds for 32x32 and N classes; unknown names list."""

from __future__ import annotations

import pytest
import torch

from mapguard._errors import ConfigError
from mapguard.models import Normalize, create_model, list_models


@pytest.mark.parametrize(
    "name", ["vgg_small", "vgg_tiny", "resnet18", "vgg11_bn", "mobilenet_v3_small"]
)
def test_architectures_fit_32x32_and_class_count(name: str) -> None:
    model = create_model(name, num_classes=7).eval()
    assert isinstance(model[0], Normalize)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_unknown_architecture_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown architecture 'vgg_smal'.*vgg_small"):
        create_model("vgg_smal")


def test_bad_class_count() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("vgg_tiny", num_classes=1)


def test_default_list_contains_required_torchvision_architectures() -> None:
    assert {"resnet18", "vgg11_bn", "mobilenet_v3_small", "vgg_small"} <= set(list_models())


def test_normalize_is_per_channel() -> None:
    norm = Normalize((0.5, 0.0, 1.0), (0.5, 1.0, 2.0))
    x = torch.ones(1, 3, 2, 2)
    y = norm(x)
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([1.0, 1.0, 0.0]))
