"""ImageFolder directories: round trip, train/test layout, seeded split, every bad-input case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mapguard._errors import DataError
from mapguard.data import load_data, save_grid_png

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "emu": (30, 30, 200)}


def _write_class(
    folder: Path, colour: tuple[int, int, int], n: int, *, size=(32, 32), start=0
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        pixels[...] = colour
        pixels[: size[1] // 4] = (4 * i, 4 * i, 4 * i)  # a top band makes every image unique
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    """10 images per class in cat/, dog/, emu/ (emu nested one level deeper, some JPEG)."""
    root = tmp_path / "flat"
    _write_class(root / "dog", COLOURS["dog"], 10)
    _write_class(root / "cat", COLOURS["cat"], 10, size=(64, 48))
    _write_class(root / "emu" / "sub", COLOURS["emu"], 9)
    Image.new("RGB", (20, 20), COLOURS["emu"]).save(root / "emu" / "x.JPG")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root


def test_round_trip_of_a_flat_folder(flat: Path) -> None:
    every = load_data(str(flat), split="all", progress=False)
    assert every.classes == ("cat", "dog", "emu") and every.name == str(flat)
    assert every.images.shape == (30, 3, 32, 32) and every.images.dtype == torch.uint8
    assert torch.bincount(every.labels).tolist() == [10, 10, 10]
    for label, colour in enumerate(COLOURS.values()):
        centre = every.images[every.labels == label][:, :, 16, 16].to(torch.int16)
        assert (centre - torch.tensor(colour)).abs().max() <= 3  # resized, colour kept (JPEG: ~)


def test_flat_folder_split_is_stratified_disjoint_and_seeded(flat: Path) -> None:
    train = load_data(flat, split="train", seed=0, progress=False)
    test = load_data(flat, split="test", seed=0, progress=False)
    assert torch.bincount(test.labels).tolist() == [2, 2, 2] and len(train) == 24

    def keys(data):
        return {bytes(img.numpy().tobytes()) for img in data.images}

    assert not keys(train) & keys(test)
    again = load_data(flat, split="test", seed=0, progress=False)
    assert torch.equal(again.images, test.images)
    others = [load_data(flat, split="test", seed=s, progress=False) for s in (1, 2, 3)]
    assert any(keys(o) != keys(test) for o in others)


def test_train_and_test_subfolders_are_used(tmp_path: Path) -> None:
    root = tmp_path / "split"
    for name, colour in COLOURS.items():
        _write_class(root / "train" / name, colour, 4)
    _write_class(root / "test" / "dog", COLOURS["dog"], 3, start=50)
    train = load_data(root, split="train", progress=False)
    test = load_data(root, split="test", progress=False)
    every = load_data(root, split="all", progress=False)
    assert train.classes == test.classes == ("cat", "dog", "emu")
    assert len(train) == 12 and test.labels.tolist() == [1, 1, 1] and len(every) == 15


def test_folder_without_class_subfolders(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=f"data folder '{tmp_path}' has no class sub-folders"):
        load_data(tmp_path, progress=False)


def test_class_folder_without_images(flat: Path) -> None:
    (flat / "fox").mkdir()
    with pytest.raises(DataError, match=f"class folder '{flat / 'fox'}' contains no images"):
        load_data(flat, progress=False)


def test_unreadable_image_is_named(flat: Path) -> None:
    bad = flat / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG but not really")
    with pytest.raises(DataError, match=f"cannot read image '{bad}'"):
        load_data(flat, progress=False)


def test_test_class_missing_from_train(tmp_path: Path) -> None:
    _write_class(tmp_path / "train" / "cat", COLOURS["cat"], 2)
    _write_class(tmp_path / "test" / "owl", COLOURS["cat"], 2)
    with pytest.raises(DataError, match=r"test classes \['owl'\]"):
        load_data(tmp_path, split="test", progress=False)


def test_too_small_for_a_test_split(tmp_path: Path) -> None:
    _write_class(tmp_path / "cat", COLOURS["cat"], 2)  # round(0.2 * 2) = 0 held out
    assert len(load_data(tmp_path, split="train", progress=False)) == 2
    with pytest.raises(DataError, match=f"split 'test' of data folder '{tmp_path}' is empty"):
        load_data(tmp_path, split="test", progress=False)


def test_grid_png_is_small_and_atomic(flat: Path, tmp_path: Path) -> None:
    data = load_data(flat, split="all", progress=False)
    out = tmp_path / "grid.png"
    save_grid_png([data, data], out, n_per_class=4)
    with Image.open(out) as im:
        assert im.size == (2 * (4 * 33 - 1) + 8, 3 * 33 - 1 + 14)
    with pytest.raises(Exception, match="exists"):
        save_grid_png(data, out)
    save_grid_png(data, out, n_per_class=2, colors=16, force=True)
    with Image.open(out) as im:
        assert im.mode == "P" and im.size == (2 * 33 - 1, 3 * 33 - 1 + 14)
    with pytest.raises(DataError, match="n_per_class >= 1, got 0"):
        save_grid_png(data, tmp_path / "other.png", n_per_class=0)


SQUARES = [(20, 20), (32, 32), (45, 45), (64, 64), (97, 97), (300, 300)]
MIXED = [(20, 20), (64, 48), (48, 64), (33, 97), (300, 120), (224, 224), (17, 500)]
#: sha256[:16] of load_data(noise folder of SQUARES, seed 4).images for split "all" and "train",
#: computed with the code before image sizes existed (commit a77b58d, which resized every image
#: to 32x32 with Image.resize): square images at the default size must stay byte-identical.
FOLDER_DIGESTS_32 = {"all": "abf59826f45133ec", "train": "f56f3d7a1d7438e9"}


@pytest.mark.parametrize("split", ["all", "train"])
def test_square_images_at_32_are_byte_identical_to_before(tmp_path, noise_folder, split) -> None:
    import hashlib

    root = noise_folder(tmp_path / "sq", SQUARES)
    data = load_data(root, split=split, seed=4, progress=False)
    digest = hashlib.sha256(data.images.numpy().tobytes()).hexdigest()[:16]
    assert digest == FOLDER_DIGESTS_32[split]


@pytest.mark.parametrize("size", [32, 64, 224])
def test_images_of_mixed_sizes_are_resized_and_centre_cropped(tmp_path, noise_folder, size):
    from mapguard.data._resize import resize_crop

    root = noise_folder(tmp_path / "mixed", MIXED)
    data = load_data(root, split="all", size=size, progress=False)
    assert data.images.shape == (3 * len(MIXED), 3, size, size) and data.side == size
    for i, path in enumerate(sorted(root.glob("*/*.png"))):  # class folders, then file names
        with Image.open(path) as im:
            expected = np.asarray(resize_crop(im.convert("RGB"), size))
        assert np.array_equal(data.images[i].permute(1, 2, 0).numpy(), expected), path


def test_crop_keeps_the_centre_and_aspect(tmp_path: Path) -> None:
    # A 200x100 image: red centre square, blue side bands. Squashing would keep blue; a crop
    # of the centre keeps only red.
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:, :, 2] = 255
    pixels[:, 50:150] = (255, 0, 0)
    (tmp_path / "d" / "a").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / "d" / "a" / "x.png")
    data = load_data(tmp_path / "d", split="all", size=64, progress=False)
    red = torch.tensor([255, 0, 0], dtype=torch.uint8)[:, None, None]
    assert (data.images[0][:, :, 1:-1] == red).all()
