"""mapguard.api: objects in (a module, a description, torch Datasets), the same guarantees out."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

from mapguard import api
from mapguard._errors import ConfigError, DataError


def test_docstring_example_runs():
    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


class _Pil(Dataset):
    def __init__(self, sizes):
        self.sizes = sizes

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        w, h = self.sizes[i]
        pixels = np.full((h, w, 3), 10 * i, dtype=np.uint8)
        pixels[:, : w // 2] = 200  # left half bright: survives the centre crop
        return Image.fromarray(pixels), i % 3


def test_image_set_reads_pil_uint8_and_float_items_at_the_side():
    pil = api.image_set(_Pil([(50, 40), (40, 64), (32, 32)]), size=32, classes=["a", "b", "c"])
    assert pil.images.shape == (3, 3, 32, 32)
    assert pil.labels.tolist() == [0, 1, 2]
    assert pil.classes == ("a", "b", "c")
    assert int(pil.images[2, 0, 0, 0]) == 200 and int(pil.images[2, 0, 0, 31]) == 20
    grey = TensorDataset(torch.full((2, 1, 16, 16), 255, dtype=torch.uint8), torch.tensor([0, 1]))
    assert api.image_set(grey, size=32).images.min() == 255
    floats = TensorDataset(torch.full((2, 3, 64, 64), 0.5), torch.tensor([1, 0]))
    out = api.image_set(floats, size=32)
    assert out.classes == ("0", "1")
    assert torch.all(out.images == 128)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (TensorDataset(torch.rand(2, 4, 8, 8), torch.tensor([0, 1])), "must be \\[3, H, W\\]"),
        (TensorDataset(torch.rand(2, 3, 8, 8), torch.tensor([0, -1])), "labels must be in"),
        ([1, 2], "not an \\(image, label\\) pair"),
        ([("picture", 0)], "must be a tensor or a PIL image"),
        (3, "map-style Dataset"),
        ([], "1 to"),
    ],
)
def test_image_set_refuses_bad_datasets_in_one_line(data, message):
    with pytest.raises(DataError, match=message):
        api.image_set(data, size=32)


def test_describe_validates():
    meta = api.describe(arch="torchvision:resnet18", num_classes=3, size=224, classes="xyz")
    assert meta.input_size == (3, 224, 224) and meta.classes == ("x", "y", "z")
    with pytest.raises(ConfigError, match="class names"):
        api.describe(arch="vgg_tiny", num_classes=3, classes=["a"])
    with pytest.raises(ConfigError, match="size"):
        api.describe(arch="vgg_tiny", num_classes=3, size=4)


def test_embed_a_module_needs_its_description(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mapguard.models import create_model

    with pytest.raises(ConfigError, match="describe"):
        api.embed(create_model("vgg_tiny"), "builtin:mnist", Ed25519PrivateKey.generate(),
                  out=tmp_path / "wm")  # fmt: skip
    assert not (tmp_path / "wm").exists()


def test_verify_a_module_equals_verifying_its_file(embedded):
    """The same model as an in-memory module and as its checkpoint file: the same p-value."""
    from mapguard.checkpoint import load_checkpoint

    model_file = embedded.out / "protected.pt"
    module, _ = load_checkpoint(model_file)
    wm = embedded.out / "owner.wm"
    by_module = api.verify(module, wm, claim_nonce="api test")
    by_file = api.verify(model_file, wm, claim_nonce="api test")
    assert by_module.result.pvalue == by_file.result.pvalue
    assert by_module.evidenced and by_module.predicate["suspect"]["format"] == "torch.nn.Module"
