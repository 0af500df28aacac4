"""The attacker's training loop and the layer look-ups the recipes share."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from mapguard._device import autocast, fast_layout
from mapguard._errors import ConfigError, TrainingError
from mapguard._progress import progress_bar
from mapguard.attacks._registry import AttackContext
from mapguard.masking import maskable_weights
from mapguard.training import augment_batch, batches

__all__ = [
    "LossFn",
    "cross_entropy",
    "fit",
    "last_linear",
    "reinit",
    "weight_tensors",
]

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Plain supervised loss on the attacker's labels."""
    return F.cross_entropy(model(x), y)


def fit(
    ctx: AttackContext,
    model: nn.Module,
    *,
    params: Iterable[nn.Parameter],
    loss_fn: LossFn = cross_entropy,
    labels: torch.Tensor | None = None,
    train_mode: bool = True,
    after_step: Callable[[], None] | None = None,
    label: str = "attack",
) -> nn.Module:
    """Train ``params`` of ``model`` on ``ctx.data`` (SGD, momentum 0.9, one-cycle schedule as
    :func:`mapguard.training.train_model` uses; bf16 autocast and channels-last inside
    :func:`mapguard._device.mixed_precision`, ``--amp`` on CUDA).

    Args:
        ctx: The attack context (data, options, seed, device).
        model: The module to train (changed in place, returned in eval mode on the CPU).
        params: The parameters the optimiser updates; the others stay fixed.
        loss_fn: ``loss_fn(model, x, y)`` on one (augmented) batch.
        labels: Targets passed to ``loss_fn`` (default: the data's true labels).
        train_mode: Run the model in train mode (BatchNorm statistics update) or eval mode.
        after_step: Called after every optimiser step (e.g. to keep pruned weights at zero).
        label: Progress-bar title.

    Raises:
        TrainingError: the loss became NaN or infinite.
    """
    cfg, dev = ctx.config, ctx.device
    if ctx.data is None:
        raise ConfigError("this attack needs data")
    x = ctx.data.floats()
    y = ctx.data.labels if labels is None else labels
    gen = torch.Generator().manual_seed(ctx.seed)
    params = [p for p in params]
    opt = torch.optim.SGD(
        params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True
    )
    per_epoch = max(1, len(x) // cfg.batch_size) if len(x) >= cfg.batch_size else 1
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * per_epoch
    )
    fast_layout(model.to(dev).train(train_mode), dev)  # channels-last under --amp (CUDA)
    with progress_bar(label, total=cfg.epochs * per_epoch, enabled=ctx.progress) as bar:
        for _ in range(cfg.epochs):
            for xb, yb in batches(x, y, batch_size=cfg.batch_size, generator=gen, drop_last=True):
                xb = fast_layout(_augment(xb, gen, cfg.augment).to(dev), dev)
                _step(model, opt, loss_fn, xb, yb.to(dev))
                sched.step()
                if after_step is not None:
                    after_step()
                bar.advance()
    return fast_layout(model, dev, undo=True).eval().cpu()


def _augment(x: torch.Tensor, gen: torch.Generator, enabled: bool | None) -> torch.Tensor:
    return augment_batch(x, gen) if enabled else x


def _step(
    model: nn.Module, opt: torch.optim.Optimizer, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor
) -> None:
    with autocast(x.device):  # bf16 under --amp (CUDA); float32 otherwise
        loss = loss_fn(model, x, y).float()
    if not torch.isfinite(loss):
        raise TrainingError("attack training loss became NaN/inf; lower --lr")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def last_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` in module order (the classification layer of every zoo model).

    Raises:
        ConfigError: the model has no linear layer.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("the model has no nn.Linear layer; last-layer attacks do not apply")
    return linears[-1]


def reinit(layer: nn.Linear, seed: int) -> None:
    """Re-initialise ``layer`` as ``nn.Linear.reset_parameters`` does, from an explicit seed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
        if layer.bias is not None:
            bound = 1 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
            nn.init.uniform_(layer.bias, -bound, bound, generator=gen)


def weight_tensors(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight of every Conv/Linear layer (what MAP masks and pruning removes), by name."""
    named = dict(model.named_parameters())
    return {name: named[name] for name in maskable_weights(model)}
