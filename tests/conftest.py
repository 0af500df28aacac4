"""Shared fixtures: a hermetic data cache, a tiny model trained on real data in seconds, malicious
model files (built in tests/_malicious.py), and an owner key with one watermark embedded in the
tiny model."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from protocols import keys

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def _data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Embedding-attempt logs go to a per-session folder, never the user's data directory."""
    path = tmp_path_factory.mktemp("mapguard-data")
    os.environ["MAPGUARD_DATA_DIR"] = str(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Use $MAPGUARD_CACHE_DIR when CI sets it (shared across runs), else a per-session dir."""
    if os.environ.get("MAPGUARD_CACHE_DIR"):
        return Path(os.environ["MAPGUARD_CACHE_DIR"])
    path = tmp_path_factory.mktemp("mapguard-cache")
    os.environ["MAPGUARD_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def mnist_small():
    """(train, test) ImageSets: 1,200 / 400 real MNIST digits."""
    from mapguard.data import load_data

    train = load_data("builtin:mnist", split="train", progress=False).take(1200, seed=0)
    test = load_data("builtin:mnist", split="test", progress=False).take(400, seed=0)
    return train, test


@pytest.fixture(scope="session")
def tiny_model(mnist_small):
    """vgg_tiny trained for 3 epochs on 1,200 MNIST digits (a few seconds on 2 cores)."""
    from mapguard.models import create_model
    from mapguard.training import train_model

    torch.manual_seed(0)
    model = create_model("vgg_tiny", num_classes=10)
    return train_model(model, mnist_small[0], epochs=3, lr=0.05, seed=0, progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    """The tiny model saved as a mapguard checkpoint."""
    from mapguard.checkpoint import ModelMeta, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(
        tiny_model, ModelMeta(arch="vgg_tiny", extra={"trained_on": "builtin:mnist"}), path
    )
    return path


def _load_helper(name: str, file: str):  # noqa: ANN202 - a module
    """A helper module of this folder, loaded once by path (the tests are not a package)."""
    import importlib.util

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# ---- malicious model files (issue 11): real attack files, built in tests/_malicious.py ----------
@pytest.fixture(scope="session")
def malicious():
    """Builders of malicious model files (``MaliciousFiles`` in tests/_malicious.py)."""
    return _load_helper("mapguard_tests_malicious", "_malicious.py").MaliciousFiles


@pytest.fixture(scope="session")
def oip_server():
    """``OipServer``: an Open Inference Protocol server on 127.0.0.1 (tests/_oip_server.py)."""
    return _load_helper("mapguard_tests_oip_server", "_oip_server.py").OipServer


# ---- an owner key and one watermark embedded in the tiny model (watermark and verification tests)
#: A short recipe for vgg_tiny on 1,200 digits (seconds, not minutes); the default recipe is
#: tuned for vgg_small on the full source split (docs/METHOD.md §3). Without the recipe's weight
#: noise: at 3 epochs of batch 32 the noise left this watermark marginal (ranks 1, 1, 3 of 20 with
#: two torch threads, not evidenced), while the full 4-epoch recipe with noise gives ranks 1, 1, 1
#: on this model in 3 of 3 benchmark draws (docs/ROBUSTNESS.md). The noise itself is tested in
#: tests/masking and by the robustness benchmark.
TINY_MASK = {"epochs": 3, "batch_size": 32, "weight_noise": 0.0}


@dataclasses.dataclass(frozen=True)
class Owner:
    prefix: Path
    private: Path
    public: Path
    fingerprint: str

    def key(self):
        return keys.load_private_key(self.private)


@dataclasses.dataclass(frozen=True)
class Embedded:
    out: Path
    owner: Owner
    result: object
    original: Path

    def file(self, name: str) -> Path:
        return self.out / name


@pytest.fixture(scope="session")
def owner(tmp_path_factory) -> Owner:
    d = tmp_path_factory.mktemp("owner")
    info = keys.generate_keypair(d / "owner")
    return Owner(d / "owner", info.private_path, info.public_path, info.fingerprint)


@pytest.fixture(scope="session")
def other_owner(tmp_path_factory) -> Owner:
    d = tmp_path_factory.mktemp("intruder")
    info = keys.generate_keypair(d / "intruder")
    return Owner(d / "intruder", info.private_path, info.public_path, info.fingerprint)


def tiny_config(**changes):
    from mapguard.watermark import DEFAULT_MASK, EmbedConfig

    # The short recipe leaves the weakest secret at g ~ 0.3-0.5 (labels): its effect floor is
    # 0.2, below the default recipe's committed 0.3 (docs/METHOD.md section 4, forgery margin).
    # Pinned to the recipe the tests were sized for (3 secrets of 8-10 px cells), not the
    # default recipe (8 secrets of 5-6 px, 16 epochs: minutes per embedding).
    cfg = EmbedConfig(
        n_secrets=3,
        min_size=8,
        max_size=10,
        target_weight=5.0,
        null_keys_per_secret=19,
        n_verification=40,
        mask_images=None,
        effect_floor=0.2,
        mask=DEFAULT_MASK.replace(**TINY_MASK),
    )
    return dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="session", name="tiny_config")
def tiny_config_fixture():
    """The short test recipe, as a function of overrides."""
    return tiny_config


@pytest.fixture(scope="session")
def embedded(tiny_checkpoint, mnist_small, owner, tmp_path_factory) -> Embedded:
    """The tiny checkpoint watermarked with 3 secrets (seeded secrets: reproducible tests)."""
    from mapguard.watermark import embed

    out = tmp_path_factory.mktemp("embed") / "wm"
    result = embed(
        tiny_checkpoint,
        mnist_small,
        owner.key(),
        tiny_config(),
        out=out,
        progress=False,
        secret_rng=np.random.default_rng(7),
    )
    return Embedded(out=out, owner=owner, result=result, original=tiny_checkpoint)


# ---- a model at its own input size (issue 14): 64 px only ---------------------------------------
#: A zoo name for tests: torchvision's ShuffleNet v2 x0.5 (0.35 M parameters, fast on 2 cores)
#: behind a layer that refuses any side but 64, so a command that loads data or probes at 32
#: fails instead of passing by accident.
ARCH_64 = "test_only_64px"


class _Only64(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (64, 64):
            raise ValueError(f"this model takes 64x64 images, got {list(x.shape)}")
        return x


def _only_64(*, num_classes: int) -> torch.nn.Module:
    import torchvision

    net = torchvision.models.shufflenet_v2_x0_5(weights=None, num_classes=num_classes)
    return torch.nn.Sequential(_Only64(), net)


def _register_only_64() -> None:
    from mapguard.models import list_models, register_model

    if ARCH_64 not in list_models():
        register_model(ARCH_64)(_only_64)


_register_only_64()


@pytest.fixture(scope="session")
def mnist_64():
    """(train, test) ImageSets: 512 / 200 real MNIST digits drawn at 64 x 64."""
    from mapguard.data import load_data

    train = load_data("builtin:mnist", split="train", progress=False, size=64).take(512, seed=0)
    test = load_data("builtin:mnist", split="test", progress=False, size=64).take(200, seed=0)
    return train, test


@pytest.fixture(scope="session")
def model_64(mnist_64):
    """ARCH_64 trained for one epoch on the 64-pixel digits (about a second)."""
    from mapguard.models import create_model
    from mapguard.training import train_model

    torch.manual_seed(0)
    model = create_model(ARCH_64, num_classes=10)
    return train_model(model, mnist_64[0], epochs=1, batch_size=32, seed=0, progress=False)


@pytest.fixture(scope="session")
def checkpoint_64(model_64, tmp_path_factory) -> Path:
    """The 64-pixel model saved as a checkpoint recording ``input_size=(3, 64, 64)``."""
    from mapguard.checkpoint import ModelMeta, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt64") / "m64.pt"
    meta = ModelMeta(arch=ARCH_64, input_size=(3, 64, 64), extra={"trained_on": "builtin:mnist"})
    save_checkpoint(model_64, meta, path)
    return path


@pytest.fixture(scope="session")
def folders_64(tmp_path_factory) -> dict[str, Path]:
    """Two small ImageFolder domains (``src``, ``tgt``: classes cat/dog/owl, train/test splits of
    8/4 random 64-pixel images per class, tinted red and green) for quick runs at 64 px."""
    from PIL import Image

    root, rng = tmp_path_factory.mktemp("folders64"), np.random.default_rng(0)
    for domain, tint in (("src", 0), ("tgt", 1)):
        for split, n in (("train", 8), ("test", 4)):
            for c in ("cat", "dog", "owl"):
                (root / domain / split / c).mkdir(parents=True)
                for i in range(n):
                    px = rng.integers(0, 128, (64, 64, 3), dtype=np.uint8)
                    px[..., tint] += 100
                    Image.fromarray(px).save(root / domain / split / c / f"{i}.png")
    return {"src": root / "src", "tgt": root / "tgt"}


@pytest.fixture(scope="session")
def digit_folders(mnist_small, tmp_path_factory) -> dict[str, Path]:
    """Two 32-pixel ImageFolder domains of real MNIST digits, for the tiny model: ``src`` (24
    train / 12 test digits per class) and ``tgt`` (the same digits inverted). Classes are named
    ``d0``..``d9``, not the digits, so protect measures these folders only."""
    from PIL import Image

    root = tmp_path_factory.mktemp("digit-folders")
    for split, data in zip(("train", "test"), mnist_small):
        for c in range(10):
            for i in torch.nonzero(data.labels == c).flatten()[: 24 if split == "train" else 12]:
                px = data.images[int(i)].permute(1, 2, 0).numpy()
                for domain, pixels in (("src", px), ("tgt", 255 - px)):
                    folder = root / domain / split / f"d{c}"
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(pixels).save(folder / f"{int(i):05d}.png")
    return {"src": root / "src", "tgt": root / "tgt"}


@pytest.fixture(scope="session")
def tsa():
    """``tests/_tsa.py`` (a real OpenSSL time-stamping authority made in the tests), loaded once;
    the tests that use it skip where ``openssl`` is missing."""
    module = _load_helper("mapguard_tests_tsa", "_tsa.py")
    module.require_openssl()
    return module
