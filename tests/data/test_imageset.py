"""ImageSet: validation, floats, subset, stratified take; the registry of domains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mapguard._errors import DataError
from mapguard.data import Built, ImageSet, _registry, list_domains, load_data, register_domain


def _toy(n_per_class: tuple[int, ...] = (30, 10, 60)) -> ImageSet:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)]).to(torch.int64)
    images = torch.zeros(len(labels), 3, 32, 32, dtype=torch.uint8)
    index = torch.arange(len(labels))
    images[:, 0, 0, 0], images[:, 0, 0, 1] = index % 256, index // 256  # every image unique
    images[:, 1] = torch.randint(0, 256, (32, 32), generator=torch.Generator().manual_seed(0))
    return ImageSet(
        name="toy", split="train", images=images, labels=labels, classes=("a", "b", "c")
    )


def test_floats_follow_the_pixel_convention() -> None:
    data = _toy()
    x = data.floats()
    assert x.dtype == torch.float32 and x.shape == data.images.shape
    assert torch.equal(torch.round(x * 255).to(torch.uint8), data.images)
    assert data.images.dtype == torch.uint8  # floats() does not touch the stored pixels


def test_subset_by_indices_and_mask() -> None:
    data = _toy()
    sub = data.subset([5, 0, 35])
    assert torch.equal(sub.images, data.images[[5, 0, 35]])
    assert sub.labels.tolist() == [0, 0, 1] and (sub.name, sub.split) == ("toy", "train")
    masked = data.subset(data.labels == 2)
    assert len(masked) == 60 and set(masked.labels.tolist()) == {2}
    assert len(data.subset(np.array([], dtype=np.int64))) == 0


def test_take_is_deterministic_stratified_and_without_repeats() -> None:
    data = _toy((300, 100, 600))
    a, b, c = data.take(100, seed=3), data.take(100, seed=3), data.take(100, seed=4)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert torch.bincount(a.labels).tolist() == [30, 10, 60]  # proportions kept
    rows = {bytes(img.numpy().tobytes()) for img in a.images}
    assert len(rows) == 100
    assert len(data.take(len(data), seed=0)) == len(data)


@pytest.mark.parametrize("n", [0, -1, 1001, 2.0, True])
def test_take_rejects_bad_sizes(n) -> None:
    with pytest.raises(DataError, match=f"cannot take n={n!r} images from 'toy'"):
        _toy((300, 100, 600)).take(n, seed=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images": torch.zeros(2, 3, 28, 30, dtype=torch.uint8)}, r"\[N, 3, S, S\] \(square"),
        ({"images": torch.zeros(2, 1, 32, 32, dtype=torch.uint8)}, r"got torch.uint8 \[2, 1, 32"),
        ({"images": torch.zeros(2, 3, 32, 32)}, "torch.float32"),
        ({"labels": torch.zeros(3, dtype=torch.int64)}, r"int64 \[2\]"),
        ({"labels": torch.tensor([0, 3])}, r"must lie in 0..2, got 0..3"),
    ],
)
def test_imageset_validates_its_fields(change: dict, message: str) -> None:
    fields = {
        "name": "x",
        "split": "all",
        "images": torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
        "labels": torch.tensor([0, 1]),
        "classes": ("a", "b", "c"),
    }
    with pytest.raises(DataError, match=message):
        ImageSet(**{**fields, **change})


def test_repr_is_short() -> None:
    assert repr(_toy()) == "ImageSet(name='toy', split='train', n=100, classes=3)"


@pytest.fixture
def scratch_registry(monkeypatch, tmp_path):
    """A throw-away copy of the registry (built-ins included) and cache directory."""
    list_domains()  # registers the built-ins into the real registry first
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    monkeypatch.setenv("MAPGUARD_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_registered_domain_is_loadable(scratch_registry) -> None:

    @register_domain("stripes", size=20)
    def _stripes(rng: np.random.Generator, advance) -> Built:
        labels = np.repeat(np.arange(10, dtype=np.int64), 2)
        images = np.zeros((20, 32, 32, 3), dtype=np.uint8)
        images[:, :, ::2] = rng.integers(1, 255, size=(20, 1, 1, 3), dtype=np.uint8)
        advance(20)
        return Built(images=images, labels=labels, is_test=np.arange(20) % 2 == 1)

    assert "stripes" in list_domains()
    test = load_data("builtin:stripes", split="test", seed=5, progress=False)
    assert len(test) == 10 and test.labels.tolist() == list(range(10))
    assert len(list((scratch_registry / "data").glob("stripes-v*-seed5.npz"))) == 1
    with pytest.raises(ValueError, match="already registered"):
        register_domain("stripes")(_stripes)
    # A builder without ``any_side`` draws 32x32; other sides are its images resized.
    big = load_data("builtin:stripes", split="test", seed=5, size=64, progress=False)
    assert big.images.shape == (10, 3, 64, 64) and torch.equal(big.labels, test.labels)
    means = big.images.float().mean((2, 3)), test.images.float().mean((2, 3))
    assert (means[0] - means[1]).abs().max() < 3  # resizing keeps each image's mean colour
    assert len(list((scratch_registry / "data").glob("stripes-v*-seed5-64px.npz"))) == 1


def test_imageset_of_any_square_side() -> None:
    data = ImageSet(
        name="x",
        split="all",
        images=torch.zeros(2, 3, 224, 224, dtype=torch.uint8),
        labels=torch.tensor([0, 1]),
        classes=("a", "b"),
    )
    assert data.side == 224 and data.floats().shape == (2, 3, 224, 224)
    assert data.subset([1]).side == 224


def test_bad_builder_output_is_reported(scratch_registry) -> None:

    @register_domain("broken")
    def _broken(rng, advance) -> Built:
        z = np.zeros(4, dtype=np.int64)
        return Built(images=np.zeros((4, 28, 28, 3), np.uint8), labels=z, is_test=z > 0)

    with pytest.raises(DataError, match=r"domain 'broken' built images uint8 \[4, 28, 28, 3\]"):
        load_data("builtin:broken", progress=False)


@pytest.mark.parametrize("name", ["", "Mnist", "bad name", "builtin:x", "9lives"])
def test_register_domain_rejects_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="domain name must match"):
        register_domain(name)
