"""Supervised training and evaluation of source models (and ``train_source``, the library side
of ``mapguard train``).

Example:
    >>> from mapguard.data import load_data
    >>> from mapguard.models import create_model
    >>> train = load_data("builtin:optdigits", split="train", progress=False)
    >>> model = train_model(create_model("vgg_tiny"), train, epochs=1, seed=0, progress=False)
    >>> 0.0 <= accuracy(model, load_data("builtin:optdigits", split="test", progress=False)) <= 1.0
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from mapguard import __version__
from mapguard._config import check_int, check_number
from mapguard._device import autocast, check_amp, default_device, fast_layout, mixed_precision
from mapguard._errors import ConfigError, DataError, ModelFileError, TrainingError
from mapguard._progress import progress_bar
from protocols.fileio import check_writable

if TYPE_CHECKING:
    from mapguard.checkpoint import ModelMeta
    from mapguard.data import FolderDataset, ImageSet, ImageSetDataset

    #: What training and measuring take: an in-memory split or a streamed one.
    Data = ImageSet | FolderDataset | ImageSetDataset

__all__ = [
    "DEFAULT_SIDE",
    "STREAM_BATCH",
    "TrainConfig",
    "accuracy",
    "augment_batch",
    "batches",
    "check_compatible",
    "input_side",
    "predict_logits",
    "probe_num_classes",
    "train_model",
    "train_source",
]

#: Image side of a model whose file records none (and of the model zoo's architectures).
DEFAULT_SIDE = 32

#: Images a batch when :func:`accuracy` streams a Dataset: what bounds its memory (decoded
#: images and activations), whatever the number of images.
STREAM_BATCH = 128


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Options of :func:`train_model` (serialised next to the model it produced)."""

    epochs: int = 10
    lr: float = 0.05
    batch_size: int = 64
    weight_decay: float = 5e-4
    augment: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, low=1)
        check_number("lr", self.lr, positive=True)
        check_int("batch_size", self.batch_size, low=1)


def batches(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    batch_size: int,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(x_batch, y_batch)``; shuffled when a generator is given."""
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        yield x[idx], (y[idx] if y is not None else None)


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Light augmentation: random shifts and brightness/contrast jitter (±20%).

    The batch is padded by ``side // 16`` on every edge (``side / 8`` in all; replicate) and cropped
    back to its own ``[H, W]`` at one random offset, a shift of up to 2 px at side 32, 4 px at 64,
    14 px at 224. At 32 the generator draws exactly what the 32-only code drew (same images).
    """
    n, _, h, w = x.shape
    pad = min(h, w) // 16
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
    x = padded[:, :, dy : dy + h, dx : dx + w]
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    bright = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + bright).clamp(0, 1)


def check_compatible(
    model_classes: int, data: Data, *, what: str = "model", side: int | None = None
) -> None:
    """Refuse data whose class count (and, given ``side``, image side) differs from the model's."""
    if len(data.classes) != model_classes:
        raise ModelFileError(
            f"{what} has {model_classes} classes but data '{data.name}' has {len(data.classes)}"
        )
    if side is not None and data.side != side:
        raise DataError(
            f"{what} takes {side}x{side} images but data '{data.name}' has "
            f"{data.side}x{data.side} ones"
        )


def input_side(meta: ModelMeta | None) -> int:
    """The image side a model takes: its checkpoint's ``input_size`` ``(3, S, S)``, or
    :data:`DEFAULT_SIDE` for a model file without metadata (nothing is inferred from the model).

    Raises:
        ModelFileError: the recorded input is not square 3-channel (mapguard data are).
    """
    if meta is None:
        return DEFAULT_SIDE
    channels, height, width = meta.input_size
    if channels != 3 or height != width:
        raise ModelFileError(
            f"model takes input {list(meta.input_size)}; mapguard works on square RGB images "
            "[3, S, S]"
        )
    return int(width)


def probe_num_classes(
    model: nn.Module, *, device: torch.device | None = None, size: int = 32
) -> int:
    """Class count of ``model`` from one forward pass (eval mode) on two blank 3 x size x size
    images.

    For model files that do not record it (metadata-less formats), and to check that a model
    takes its input side; ``device`` defaults to the device of the model's parameters.

    Raises:
        ModelFileError: the model fails on such input or does not answer ``[N, classes >= 2]``.
    """
    dev = device or next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, 3, size, size, device=dev))
    except Exception as exc:  # noqa: BLE001 - a foreign model failing on such input
        raise ModelFileError(
            f"model does not accept 3x{size}x{size} images ({str(exc)[:120]})"
        ) from None
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[1] < 2:
        raise ModelFileError(
            f"model output has shape {tuple(out.shape)}, expected [N, classes >= 2]"
        )
    return int(out.shape[1])


def train_model(
    model: nn.Module,
    data: Data,
    *,
    config: TrainConfig | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    workers: int = 0,
    **overrides: object,
) -> nn.Module:
    """Train ``model`` on ``data`` with SGD + cosine schedule; returns it in eval mode.

    ``data`` is an :class:`ImageSet` (held in memory) or a ``Dataset`` of ``(x, label)`` such as
    a :class:`~mapguard.data.FolderDataset`, streamed through a DataLoader with ``workers``
    processes in an order drawn from the seed (the same batches whatever ``workers`` is).
    Keyword ``overrides`` (e.g. ``epochs=3, seed=1``) replace fields of ``config``.
    Inside :func:`mapguard._device.mixed_precision` (``--amp``, CUDA) the forward passes run
    under bf16 autocast with channels-last tensors; the model is handed back contiguous.
    """
    cfg = TrainConfig(**{**(config.__dict__ if config else {}), **overrides})
    dev = default_device(str(device) if device else None)
    fast_layout(model.to(dev).train(), dev)  # channels-last under --amp (CUDA)
    gen = torch.Generator().manual_seed(cfg.seed)
    epoch_batches = _epoch_batches(data, cfg, gen, workers)
    steps = cfg.epochs * max(1, math.ceil(len(data) / cfg.batch_size))
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    with progress_bar("training", total=steps, enabled=progress) as bar:
        for _ in range(cfg.epochs):
            for xb, yb in epoch_batches():
                if cfg.augment:
                    xb = augment_batch(xb, gen)
                with autocast(dev):  # bf16 under --amp (CUDA); float32 otherwise
                    logits = model(fast_layout(xb.to(dev), dev))
                loss = F.cross_entropy(logits.float(), yb.to(dev))
                if not torch.isfinite(loss):
                    raise TrainingError("training loss became NaN/inf; lower --lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.advance()
    return fast_layout(model, dev, undo=True).eval()


def _epoch_batches(
    data: Data, cfg: TrainConfig, gen: torch.Generator, workers: int
) -> Callable[[], Iterable[tuple[torch.Tensor, Any]]]:
    """One epoch's shuffled ``(x, y)`` batches, last partial batch dropped (unless it is the
    only one). An ImageSet draws its order from ``gen`` (the augmentation's generator, as
    always); a Dataset from a DataLoader seeded with ``cfg.seed``, decoding as it goes."""
    if hasattr(data, "floats"):  # an ImageSet: in memory, the order of every earlier release
        x, y = data.floats(), data.labels
        return lambda: batches(x, y, batch_size=cfg.batch_size, generator=gen, drop_last=True)
    from mapguard.data import data_loader

    drop = len(data) >= cfg.batch_size
    loader = data_loader(
        data, batch_size=cfg.batch_size, seed=cfg.seed, workers=workers, drop_last=drop
    )
    return lambda: loader


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = 512, device: torch.device | None = None
) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) on float images ``x``; returned on CPU."""
    dev = device or next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    out = [model(xb.to(dev)).float().cpu() for xb, _ in batches(x, batch_size=batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def accuracy(
    model: nn.Module,
    data: Data,
    *,
    device: torch.device | None = None,
    workers: int = 0,
    batch_size: int | None = None,
) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (fraction in [0, 1]).

    An :class:`ImageSet` is predicted from memory, 512 images a batch; a ``Dataset`` (e.g. a
    folder from :func:`~mapguard.data.open_data`) is read in order through a DataLoader with
    ``workers`` processes, :data:`STREAM_BATCH` images a batch, so memory does not grow with its
    length. ``batch_size`` overrides either.
    """
    if len(data) == 0:
        raise ConfigError(f"data '{data.name}' ({data.split}) is empty")
    if hasattr(data, "floats"):
        logits = predict_logits(model, data.floats(), batch_size=batch_size or 512, device=device)
        return float((logits.argmax(1) == data.labels).float().mean())
    from mapguard.data import data_loader

    batch_size = batch_size or STREAM_BATCH
    loader = data_loader(data, batch_size=batch_size, seed=0, workers=workers, shuffle=False)
    correct = 0
    for x, y in loader:
        logits = predict_logits(model, x, batch_size=batch_size, device=device)
        correct += int((logits.argmax(1) == y).sum())
    # float32 like the in-memory mean above (an exact count over n, rounded once)
    return float(torch.tensor(correct, dtype=torch.float32) / len(data))


def train_source(
    data_spec: str,
    *,
    arch: str,
    out: str | Path,
    epochs: int = 10,
    lr: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
    size: int | None = None,
    force: bool = False,
    device: str | None = None,
    progress: bool = True,
    workers: int = 0,
    amp: bool = False,
) -> dict[str, Any]:
    """Train ``arch`` on ``data_spec`` (train split), save it, and report test accuracy.

    ``arch`` is a zoo name or a spec (``torchvision:resnet18``, see
    :func:`mapguard.models.create_model`); images are ``size x size`` (default
    :data:`DEFAULT_SIDE`, the zoo's side), and the checkpoint records ``input_size=(3, size,
    size)``. The fresh model is probed at that side before it is trained. A folder is streamed
    from disk (``workers`` decoding processes; the same model whatever their number), a built-in
    domain held in memory.
    ``amp``: bf16 autocast and channels-last while training (``--amp``; CUDA only, refused
    elsewhere before any data are read; :mod:`mapguard._device`).
    """
    from mapguard.checkpoint import ModelMeta, save_checkpoint
    from mapguard.data import MAX_SIZE, MIN_SIZE, load_or_stream
    from mapguard.models import create_model

    side = DEFAULT_SIDE if size is None else size
    check_int("size", side, low=MIN_SIZE, high=MAX_SIZE)
    check_writable(out, force=force)  # fail before spending minutes on training
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    check_int("workers", workers, low=0)
    dev = default_device(device)
    if amp:
        check_amp(dev)  # before the data are read
    train = load_or_stream(data_spec, split="train", seed=0, progress=progress, size=side)
    test = load_or_stream(data_spec, split="test", seed=0, progress=progress, size=side)
    t0 = time.perf_counter()
    # Parameter init (and dropout while training) draw from torch's global generator: seed it
    # inside a fork, so that the caller's global random state is left as it was.
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        model = create_model(arch, num_classes=len(train.classes))
        probe_num_classes(model, size=side)  # an arch that cannot take the side fails in one line
        with mixed_precision(dev, amp):
            train_model(model, train, config=cfg, device=dev, progress=progress, workers=workers)
    seconds = time.perf_counter() - t0
    acc = accuracy(model, test, device=dev, workers=workers)
    meta = ModelMeta(
        arch=arch,
        num_classes=len(train.classes),
        classes=tuple(train.classes),
        input_size=(3, side, side),
        extra={
            "trained_on": data_spec,
            "train_config": json.dumps(dataclasses.asdict(cfg), sort_keys=True),
            "test_accuracy": f"{acc:.6f}",
            "tool": f"mapguard {__version__}",
        },
    )
    meta = save_checkpoint(model.cpu(), meta, out, force=force)
    return {
        "out": str(out),
        "arch": arch,
        "data": data_spec,
        "size": side,
        "test_accuracy": acc,
        "seconds": seconds,
        "weights_sha256": meta.weights_sha256,
    }
