"""mapguard from Python, with objects: an ``nn.Module``, a small input description, torch Datasets.

The command line works on files; these functions take what a training script already holds. A
model is any ``torch.nn.Module`` that maps float pixels ``[N, 3, S, S]`` in ``[0, 1]`` to logits
(put your input normalisation inside it, e.g. ``nn.Sequential(mapguard.models.Normalize(mean,
std), net)``); :func:`describe` says what it takes. Data is a built-in / folder spec string, an
:class:`~mapguard.data.ImageSet`, or any map-style ``torch.utils.data.Dataset`` of
``(image, label)`` pairs (a float tensor ``[3, H, W]`` in ``[0, 1]``, a uint8 tensor or a PIL
image); a Dataset is read once into memory at the model's side (resize of the shorter side, then
a centre crop), so for data larger than memory use a folder spec, which streams.

Example:
    >>> import tempfile, torch
    >>> from torch.utils.data import TensorDataset
    >>> from mapguard import api
    >>> from mapguard.models import create_model
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = create_model("vgg_tiny")                     # any nn.Module taking [N,3,32,32]
    >>> pictures = TensorDataset(torch.rand(60, 3, 40, 40), torch.arange(60) % 10)
    >>> out = tempfile.mkdtemp() + "/wm"
    >>> recipe = api.EmbedConfig().replace(n_secrets=1, null_keys_per_secret=9, n_verification=8,
    ...                                    epochs=1, export=False)
    >>> res = api.embed(model, (pictures, pictures), Ed25519PrivateKey.generate(), recipe, out=out,
    ...                 input=api.describe(arch="vgg_tiny", num_classes=10), progress=False)
    >>> res.self_check["queries"]                              # 10 keys x 8 images + 8 clean + 2
    90
    >>> report = api.verify(model, f"{out}/owner.wm", claim_nonce="example claim")
    >>> report.result.queries, report.evidenced                # the original is not watermarked
    (90, False)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image
from torch import nn

from mapguard._errors import ConfigError, DataError
from mapguard.checkpoint import ModelMeta
from mapguard.data import ImageSet, load_data
from mapguard.data._resize import resize_crop
from mapguard.watermark import EmbedConfig, EmbedResult
from mapguard.watermark import embed as _embed
from mapguard.watermark._verify import SuspectReport, verify_suspect

__all__ = ["EmbedConfig", "describe", "embed", "image_set", "verify"]

#: Most images :func:`image_set` reads from a Dataset into memory.
MAX_DATASET_IMAGES = 200_000


def describe(
    *,
    arch: str,
    num_classes: int,
    size: int = 32,
    classes: Sequence[str] | None = None,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.25, 0.25, 0.25),
) -> ModelMeta:
    """What a model takes and answers: ``size x size`` RGB pixels, ``num_classes`` classes.

    ``arch`` names how the checkpoints mapguard writes are rebuilt: a zoo name or a spec
    (``torchvision:NAME``, ``timm:NAME``, ``module:pkg.mod:factory``) whose
    ``create_model(arch, num_classes=...)`` has the module's state dict (normalisation first, as
    :func:`mapguard.models.create_model` builds it); ``mean``/``std`` are informative (the
    normalisation lives in the model).
    """
    names = tuple(str(c) for c in classes) if classes is not None else None
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not isinstance(size, int) or not 8 <= size <= 1024:
        raise ConfigError(f"size must be an integer side in [8, 1024], got {size!r}")
    if names is not None and len(names) != num_classes:
        raise ConfigError(f"{len(names)} class names for {num_classes} classes")
    return ModelMeta(
        arch=arch,
        num_classes=num_classes,
        classes=names or tuple(str(i) for i in range(num_classes)),
        input_size=(3, size, size),
        mean=tuple(mean),
        std=tuple(std),
    )


def image_set(
    data: Any,
    *,
    size: int,
    split: str = "train",
    name: str | None = None,
    classes: Sequence[str] | None = None,
) -> ImageSet:
    """``data`` (a spec, an ImageSet or a map-style Dataset of ``(image, label)``) as an
    :class:`~mapguard.data.ImageSet` of ``size x size`` images (``split`` names the spec's split).
    """
    if isinstance(data, str):
        return load_data(data, split=split, size=size, progress=False)
    if isinstance(data, ImageSet):
        if data.side != size:
            raise DataError(f"'{data.name}' has {data.side}-pixel images, the model takes {size}")
        return data
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise DataError(f"data must be a spec, an ImageSet or a map-style Dataset, got {data!r}")
    n = len(data)
    if not 0 < n <= MAX_DATASET_IMAGES:
        raise DataError(f"a Dataset must hold 1 to {MAX_DATASET_IMAGES:,} images, got {n}")
    images, labels = zip(*(_item(data[i], size, i) for i in range(n)), strict=True)
    y = torch.tensor(labels, dtype=torch.int64)
    k = len(classes) if classes is not None else int(y.max()) + 1
    names = tuple(str(c) for c in classes) if classes is not None else tuple(map(str, range(k)))
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise DataError(f"labels must be in [0, {k}), got {int(y.min())}..{int(y.max())}")
    label = name or f"{type(data).__name__}({n} images)"
    return ImageSet(name=label, split=split, images=torch.stack(images), labels=y, classes=names)


def _item(item: Any, size: int, index: int) -> tuple[torch.Tensor, int]:
    """One ``(image, label)`` pair as uint8 ``[3, size, size]`` and an int."""
    try:
        image, label = item
    except (TypeError, ValueError):
        raise DataError(f"item {index} of the Dataset is not an (image, label) pair") from None
    if isinstance(image, torch.Tensor):
        x = image.detach().cpu()
        if x.ndim != 3 or x.shape[0] not in (1, 3):
            raise DataError(f"image {index} must be [3, H, W] or [1, H, W], got {list(x.shape)}")
        if x.is_floating_point():
            x = (x.clamp(0, 1) * 255).round()
        pixels = x.to(torch.uint8).expand(3, -1, -1).permute(1, 2, 0).numpy()
        image = Image.fromarray(np.ascontiguousarray(pixels))
    if not isinstance(image, Image.Image):
        kind = type(image).__name__
        raise DataError(f"image {index} must be a tensor or a PIL image, got {kind}")
    out = np.asarray(resize_crop(image.convert("RGB"), size))
    return torch.from_numpy(out.copy()).permute(2, 0, 1).contiguous(), int(label)


def embed(
    model: nn.Module | str | os.PathLike[str],
    data: Any,
    key: Ed25519PrivateKey,
    config: EmbedConfig | None = None,
    *,
    out: str | os.PathLike[str],
    input: ModelMeta | None = None,  # noqa: A002 - the model's input description
    **options: Any,
) -> EmbedResult:
    """Watermark ``model`` (a module described by ``input``, or a checkpoint path) with ``data``:
    a spec, or ``(train, holdout)`` as ImageSets or Datasets; other options as
    :func:`mapguard.watermark.embed` (``passphrase``, ``force``, ``device``, ``progress``)."""
    if isinstance(model, nn.Module):
        if input is None:
            raise ConfigError(
                "embedding an nn.Module needs input=api.describe(arch=..., num_classes=...)"
            )
        side = input.input_size[-1]
        if not isinstance(data, str):
            if not isinstance(data, tuple | list) or len(data) != 2:
                raise DataError("data must be a spec or a (train, holdout) pair")
            data = tuple(
                image_set(d, size=side, split=s, classes=input.classes)
                for d, s in zip(data, ("train", "test"), strict=True)
            )
    return _embed(model, data, key, config, out=out, meta=input, **options)


def verify(
    suspect: nn.Module | str | os.PathLike[str],
    watermark: str | os.PathLike[str],
    *,
    claim_nonce: str,
    **options: Any,
) -> SuspectReport:
    """Run the watermark's committed analysis on ``suspect`` (a module or a model file); other
    options as :func:`mapguard.watermark.verify_suspect` (``out``, ``key``, ``timeout``, ...)."""
    return verify_suspect(suspect, watermark, claim_nonce=claim_nonce, **options)
