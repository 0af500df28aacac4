"""Restyling: real images moved to the model's BatchNorm statistics (issue 17, experimental).

A source-free user has target images but no source images. :func:`restyle` starts the inversion
of :mod:`mapguard.synthesis._invert` from target images instead of grey noise and minimises the
same objective (cross-entropy towards each image's label, BatchNorm-statistics distance, total
variation): the digit shapes stay the target's, the low-level statistics move towards what the
model's BatchNorm layers saw in training, i.e. towards the source's appearance. SF-MAP can keep
these images (the model's outputs on them) while it degrades the original target images, so the
mask is asked to separate the target's *style* from its content rather than to break what the
two domains share. The logits are optimised at full resolution from ``logit(0.1 + 0.8 x)`` (the
contrast compressed so that the sigmoid is not saturated at the start).
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from mapguard._progress import progress_bar
from mapguard.synthesis._config import SynthesisConfig
from mapguard.synthesis._invert import _batch_generator, _Objective, batch_sizes, render

__all__ = ["restyle"]


def _start_logits(x: torch.Tensor) -> torch.Tensor:
    p = 0.1 + 0.8 * x.float().clamp(0.0, 1.0)
    return torch.log(p / (1.0 - p))


def restyle(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    config: SynthesisConfig,
    steps: int,
    seed: int,
    device: torch.device,
    progress: bool = False,
) -> tuple[torch.Tensor, float]:
    """Float images ``x`` ``[N, 3, S, S]`` in ``[0, 1]`` with classes ``labels``, moved towards
    ``model``'s BatchNorm statistics by ``steps`` Adam steps of the synthesis objective (its
    weights, learning rate, jitter and batch size from ``config``). Returns the uint8 images
    and the seconds it took. The model is not modified (a private copy carries the hooks)."""
    net = copy.deepcopy(model).to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    objective = _Objective(net, config)
    side = x.shape[-1]
    out, start, t0 = [], 0, time.perf_counter()
    try:
        sizes = batch_sizes(len(x), config.batch_size)
        with progress_bar("restyling", total=len(sizes) * steps, enabled=progress) as bar:
            for i, count in enumerate(sizes):
                gen = _batch_generator(seed, i)
                y = labels[start : start + count].to(device)
                z = _start_logits(x[start : start + count]).to(device).requires_grad_(True)
                opt = torch.optim.Adam([z], lr=config.lr)
                sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
                for _ in range(steps):
                    loss, _ = objective(render(z, side), y, gen)
                    (z.grad,) = torch.autograd.grad(loss, [z])
                    opt.step()
                    sched.step()
                    bar.advance()
                with torch.no_grad():
                    out.append((render(z, side) * 255.0).round().clamp(0, 255).to(torch.uint8))
                start += count
    finally:
        objective.close()
    return torch.cat(out).cpu(), time.perf_counter() - t0
