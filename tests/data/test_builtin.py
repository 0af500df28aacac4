"""Built-in domains: shapes, labels, splits, determinism, cache, digit geometry, spec errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mapguard._errors import DataError
from mapguard.data import (
    DATA_FORMAT_VERSION,
    DIGIT_CLASSES,
    ImageSet,
    data_cache_dir,
    list_domains,
    load_data,
    parse_data_spec,
)
from mapguard.data._load import _build
from mapguard.data._registry import get_domain
from protocols.errors import InputError

DOMAINS = ["mnist", "mnistm", "optdigits", "svhnlike", "syn"]
SYNTHETIC = ["mnistm", "svhnlike", "syn"]  # depend on the seed
#: (train, test) sizes: 80/20 stratified. optdigits (sklearn, 1,797 images) rounds per class.
SIZES = {"mnist": (4000, 1000), "mnistm": (4000, 1000), "optdigits": (1438, 359)}


def _digests(data: ImageSet) -> set[bytes]:
    return {hashlib.sha256(img.numpy().tobytes()).digest() for img in data.images}


def test_list_domains_is_sorted_and_complete() -> None:
    assert list_domains() == DOMAINS


@pytest.mark.parametrize("name", DOMAINS)
def test_domain_shape_dtype_labels(splits, name: str) -> None:
    for split in ("train", "test"):
        data = splits[name][split]
        assert data.name == f"builtin:{name}" and data.split == split
        assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, 32, 32)
        assert data.labels.dtype == torch.int64 and data.classes == DIGIT_CLASSES
        counts = torch.bincount(data.labels, minlength=10)
        assert len(counts) == 10 and counts.min() > 0, counts  # every class, no label >= 10
        assert counts.max() - counts.min() <= 0.05 * len(data)  # balanced
        assert data.images.float().std() > 20  # not blank
    n_train, n_test = SIZES.get(name, (4000, 1000))
    assert (len(splits[name]["train"]), len(splits[name]["test"])) == (n_train, n_test)
    assert len(splits[name]["all"]) == n_train + n_test


@pytest.mark.parametrize("name", DOMAINS)
def test_train_and_test_are_disjoint(splits, name: str) -> None:
    train, test, every = (splits[name][s] for s in ("train", "test", "all"))
    assert not _digests(train) & _digests(test)
    assert _digests(train) | _digests(test) == _digests(every)


def test_mnistm_reuses_the_mnist_split_and_digits(splits) -> None:
    # MNIST-M pixels are |photo - 255 * (digit > 0)|: undoing the inversion under the MNIST ink
    # must give back a photo that is smoother than the MNIST-M image (the digit edges vanish).
    for split in ("train", "test"):
        mnist, mnistm = splits["mnist"][split], splits["mnistm"][split]
        assert torch.equal(mnist.labels, mnistm.labels)
        ink = (mnist.images > 0).numpy()
        pixels = mnistm.images.numpy().astype(np.int16)
        photo = np.where(ink, 255 - pixels, pixels)

        def roughness(x: np.ndarray) -> float:
            return float(np.abs(np.diff(x, axis=-1)).mean() + np.abs(np.diff(x, axis=-2)).mean())

        assert roughness(photo) < 0.6 * roughness(pixels)


def test_real_domains_ignore_the_seed(splits) -> None:
    for name in ("mnist", "optdigits"):
        other = load_data(f"builtin:{name}", split="test", seed=7, progress=False)
        assert torch.equal(other.images, splits[name]["test"].images)
        assert (data_cache_dir() / f"{name}-v{DATA_FORMAT_VERSION}.npz").is_file()


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_domains_are_deterministic_per_seed(splits, name: str) -> None:
    cached = load_data(f"builtin:{name}", split="all", seed=1, progress=False)
    rebuilt = _build(get_domain(name), 1, progress=False)  # from scratch, not from the cache
    assert np.array_equal(cached.images.permute(0, 2, 3, 1).numpy(), rebuilt.images)
    assert np.array_equal(cached.labels.numpy(), rebuilt.labels)
    seed0 = splits[name]["all"]
    assert not torch.equal(cached.images, seed0.images)
    assert not _digests(cached) & _digests(seed0)


def test_cache_hit_returns_identical_data(splits) -> None:
    path = data_cache_dir() / f"syn-v{DATA_FORMAT_VERSION}-seed0.npz"
    stamp = path.stat().st_mtime_ns
    again = load_data("builtin:syn", split="test", progress=False)
    assert path.stat().st_mtime_ns == stamp  # read, not rewritten
    assert torch.equal(again.images, splits["syn"]["test"].images)
    assert torch.equal(again.labels, splits["syn"]["test"].labels)


def test_corrupt_cache_file_is_rebuilt(tmp_path: Path, monkeypatch, splits) -> None:
    monkeypatch.setenv("MAPGUARD_CACHE_DIR", str(tmp_path))
    path = tmp_path / "data" / f"mnist-v{DATA_FORMAT_VERSION}.npz"
    path.parent.mkdir()
    path.write_bytes(b"not a zip file")
    data = load_data("builtin:mnist", split="test", progress=False)
    assert torch.equal(data.images, splits["mnist"]["test"].images)
    with np.load(path) as npz:  # replaced by a good file
        assert npz["images"].shape == (5000, 32, 32, 3)


def test_progress_bar_goes_to_stderr(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MAPGUARD_CACHE_DIR", str(tmp_path))
    load_data("builtin:mnist", progress=True)
    captured = capsys.readouterr()
    assert "building builtin:mnist" in captured.err and captured.out == ""
    load_data("builtin:mnist", progress=True)  # cached: silent
    assert capsys.readouterr().err == ""


def _ink_rows(grey: np.ndarray, threshold: float) -> tuple[int, int]:
    rows = np.flatnonzero((grey > threshold).any(axis=1))
    return rows[0], rows[-1]


@pytest.mark.parametrize("name", ["mnist", "optdigits"])
def test_real_digits_are_centred_and_mnist_sized(splits, name: str) -> None:
    grey = splits[name]["test"].images[:, 0].numpy().astype(np.float32)
    heights, centres = [], []
    for g in grey:
        top, bottom = _ink_rows(g, 0.3 * g.max())
        heights.append(bottom - top + 1)
        centres.append((top + bottom) / 2)
    assert 17 <= np.median(heights) <= 22, np.median(heights)
    assert abs(np.median(centres) - 15.5) <= 1.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mnst", "unknown data 'mnst'; use builtin:NAME with NAME one of: mnist, mnistm"),
        ("builtin:mnst", "unknown data 'builtin:mnst'.*mnist, mnistm, optdigits, svhnlike, syn"),
        ("builtin:", "unknown data 'builtin:'"),
        ("", "got ''"),
        ("./no/such/folder", "data folder './no/such/folder' does not exist"),
    ],
)
def test_bad_specs_name_the_bad_value(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_data(spec, progress=False)


def test_a_file_is_not_a_data_folder(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=f"data path '{path}' is not a directory"):
        parse_data_spec(str(path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "valid"}, "unknown split 'valid'; choose one of: train, test, all"),
        ({"seed": -1}, "seed must be a non-negative integer, got -1"),
        ({"seed": 1.5}, "got 1.5"),
        ({"seed": True}, "got True"),
    ],
)
def test_bad_split_or_seed(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_data("builtin:mnist", progress=False, **kwargs)


def test_data_errors_are_input_errors() -> None:
    assert issubclass(DataError, InputError) and issubclass(DataError, ValueError)


def test_parse_data_spec(tmp_path: Path) -> None:
    spec = parse_data_spec("builtin:syn")
    assert (spec.kind, spec.name, spec.path, str(spec)) == ("builtin", "syn", None, "builtin:syn")
    folder = parse_data_spec(tmp_path)
    assert (folder.kind, folder.path, str(folder)) == ("folder", tmp_path, str(tmp_path))


def test_package_docstring_example_runs() -> None:
    import doctest

    import mapguard.data

    result = doctest.testmod(mapguard.data, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


#: sha256[:16] of ``images`` and ``labels`` of ``load_data(f"builtin:{name}", split="all",
#: seed=0)`` computed with the code before image sizes existed (commit a77b58d, 32x32 only):
#: at the default size the domains must stay byte-identical.
DIGESTS_32 = {
    "mnist": ("cfca9edd848a5df8", "26ad812e612ebf63"),
    "mnistm": ("817a6fc4f3311d71", "26ad812e612ebf63"),
    "optdigits": ("d4b6fc17ca7bff5a", "fc2a25ada7cbec7a"),
    "svhnlike": ("e5f97f318ebd554e", "35befb9e4748e012"),
    "syn": ("72e2c61f3ef11153", "6daf989a14a196c2"),
}


def _short(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("name", DOMAINS)
def test_default_size_is_byte_identical_to_the_32_pixel_code(splits, name: str) -> None:
    data = splits[name]["all"]
    assert data.side == 32
    assert (_short(data.images), _short(data.labels)) == DIGESTS_32[name]


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("name", ["mnist", "optdigits"])
def test_real_domains_at_other_sizes(splits, name: str, size: int) -> None:
    data = load_data(f"builtin:{name}", split="test", size=size, progress=False)
    small = splits[name]["test"]
    assert data.images.shape == (len(small), 3, size, size) and data.side == size
    assert torch.equal(data.labels, small.labels)  # same digits, same split, same order
    # Downsampled back to 32 the digits look like the 32x32 ones (same geometry).
    back = torch.nn.functional.interpolate(data.floats()[:50], size=32, mode="area")
    assert (back - small.floats()[:50]).abs().mean() < 0.05
    suffix = "" if name in ("mnist", "optdigits") else "-seed0"
    assert (data_cache_dir() / f"{name}-v{DATA_FORMAT_VERSION}{suffix}-{size}px.npz").is_file()


@pytest.mark.parametrize("size", [64, 224])
def test_synthetic_renderers_draw_at_any_side(size: int) -> None:
    from mapguard.data._builtin import _svhn_image, _syn_image
    from mapguard.data._imageset import stable_rng
    from mapguard.data._sources import load_textures

    svhn = _svhn_image(stable_rng(5, "t"), 7, load_textures(), size)
    assert svhn.shape == (size, size, 3) and svhn.dtype == np.uint8 and svhn.std() > 10
    for seed in range(3):
        big = _syn_image(stable_rng(seed, "t"), 7, size)
        small = _syn_image(stable_rng(seed, "t"), 7, 32)
        assert big.shape == (size, size, 3) and big.dtype == np.uint8
        # Same layout and colours (syn draws the same numbers at every side but the noise):
        # area-downsampled to 32 it is close to the 32 px drawing. Measured: 1.3-7.5 levels.
        x = torch.from_numpy(big).permute(2, 0, 1)[None].float()
        back = torch.nn.functional.interpolate(x, size=32, mode="area")[0].permute(1, 2, 0)
        assert (back - torch.from_numpy(small).float()).abs().mean() < 12


def test_mnistm_at_48_keeps_labels_and_split(splits) -> None:
    data = load_data("builtin:mnistm", split="test", size=48, progress=False)
    assert data.images.shape[1:] == (3, 48, 48)
    assert torch.equal(data.labels, splits["mnistm"]["test"].labels)


@pytest.mark.parametrize("size", [7, 1025, 32.0, True, "64"])
def test_bad_size_names_the_value(size) -> None:
    with pytest.raises(DataError, match=f"image size must be an integer from 8 to 1024.*{size!r}"):
        load_data("builtin:mnist", size=size, progress=False)
