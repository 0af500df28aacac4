"""Model inversion (DeepInversion-style) with a low-resolution image parameterisation.

Each batch of images is ``x = sigmoid(upsample_bilinear(z))`` for learnable logits ``z`` of side
``resolution``, upsampled to the model's image side (32 by default); ``z`` starts as dark grey,
shared-channel noise. Adam (cosine-annealed) minimises

    ce * CE(f(jitter(x)), y) + bn * (s_1 d_1 + sum_{l>1} d_l) + tv * TV2(x) + l2 * mean(x^2)
    + div * mean within-class cosine similarity of penultimate features

where ``d_l`` is the distance between the batch statistics of BatchNorm layer ``l``'s input and
its running statistics (Yin et al., CVPR 2020). See ``docs/METHOD.md, section 2``.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from mapguard._errors import ConfigError
from mapguard._progress import progress_bar
from mapguard.synthesis._config import SynthesisConfig
from mapguard.synthesis._hooks import BNMatcher, PenultimateHook, batchnorm_layers
from mapguard.synthesis._result import SynthesisStats
from mapguard.training import DEFAULT_SIDE, probe_num_classes

__all__ = ["batch_sizes", "bn_loss", "invert", "squared_tv", "within_class_similarity"]


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """Split ``n`` images into ``ceil(n / batch_size)`` batches of near-equal size."""
    k = math.ceil(n / batch_size)
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _batch_generator(seed: int, index: int) -> torch.Generator:
    digest = hashlib.sha256(f"mapguard-synthesis:{seed}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _balanced_labels(n: int, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    labels = torch.arange(n) % num_classes
    return labels[torch.randperm(n, generator=gen)]


def _init_logits(n: int, cfg: SynthesisConfig, gen: torch.Generator) -> torch.Tensor:
    """Dark grey start with noise shared by the three channels (a grey image)."""
    base = math.log(cfg.init_level / (1.0 - cfg.init_level))
    noise = torch.randn(n, 1, cfg.resolution, cfg.resolution, generator=gen) * cfg.init_noise
    return (base + noise).expand(n, 3, -1, -1).clone()


def render(z: torch.Tensor, side: int = DEFAULT_SIDE) -> torch.Tensor:
    """Logits ``[B, 3, r, r]`` to images ``[B, 3, side, side]`` in ``[0, 1]``."""
    if z.shape[-1] != side:
        z = F.interpolate(z, size=(side, side), mode="bilinear", align_corners=False)
    return torch.sigmoid(z)


def squared_tv(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between horizontally and vertically adjacent pixels."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()
    dw = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
    return dh + dw


def within_class_similarity(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity between feature vectors of *different* images of the same class."""
    f = F.normalize(features.float(), dim=1)
    sim = f @ f.T
    same = (labels[:, None] == labels[None, :]) & ~torch.eye(
        len(labels), dtype=torch.bool, device=f.device
    )
    if not same.any():
        return sim.new_zeros(())
    return sim[same].mean()


def _jitter(x: torch.Tensor, amount: int, gen: torch.Generator) -> torch.Tensor:
    if amount == 0:
        return x
    dx, dy = (torch.randint(-amount, amount + 1, (2,), generator=gen)).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


class _Objective:
    """The synthesis loss for one batch, with the hooks it needs."""

    def __init__(self, model: nn.Module, cfg: SynthesisConfig) -> None:
        self.model, self.cfg = model, cfg
        self.bn = BNMatcher(model)
        self.feat = PenultimateHook(model) if cfg.diversity_weight > 0 else None

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, float]:
        cfg = self.cfg
        self.bn.reset()
        logits = self.model(_jitter(x, cfg.jitter, gen))
        loss = cfg.ce_weight * F.cross_entropy(logits.float(), y)
        bn_raw = self.bn.loss(1.0)
        if self.bn.layers and cfg.bn_weight > 0:
            loss = loss + cfg.bn_weight * self.bn.loss(cfg.first_bn_scale)
        if cfg.tv_weight > 0:
            loss = loss + cfg.tv_weight * squared_tv(x)
        if cfg.l2_weight > 0:
            loss = loss + cfg.l2_weight * x.pow(2).mean()
        if self.feat is not None and self.feat.features is not None:
            loss = loss + cfg.diversity_weight * within_class_similarity(self.feat.features, y)
        return loss, float(bn_raw.detach())

    def close(self) -> None:
        self.bn.close()
        if self.feat is not None:
            self.feat.close()


def _optimise_batch(
    objective: _Objective,
    labels: torch.Tensor,
    cfg: SynthesisConfig,
    gen: torch.Generator,
    bar,  # noqa: ANN001
    side: int,
) -> tuple[torch.Tensor, list[float]]:
    device = labels.device
    z = _init_logits(len(labels), cfg, gen).to(device).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    history = []
    for _ in range(cfg.steps):
        loss, bn_value = objective(render(z, side), labels, gen)
        if not torch.isfinite(loss):
            raise ConfigError("synthesis loss became NaN/inf; lower the synthesis lr")
        (grad,) = torch.autograd.grad(loss, [z])
        z.grad = grad
        opt.step()
        sched.step()
        history.append(bn_value)
        bar.advance()
    with torch.no_grad():
        images = (render(z, side) * 255.0).round().clamp(0, 255).to(torch.uint8).cpu()
    return images, history


@torch.no_grad()
def bn_loss(model: nn.Module, x: torch.Tensor, *, batch_size: int = 100) -> float:
    """Mean over batches of the unscaled BN-statistics distance of ``model`` on float images ``x``.

    Useful as a reference: real source data gives the scale a faithful synthesis should reach.
    Returns NaN for a model without BatchNorm.
    """
    matcher = BNMatcher(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        if not matcher.layers:
            return float("nan")
        values = []
        for i in range(0, len(x), batch_size):
            matcher.reset()
            model(x[i : i + batch_size].to(device))
            values.append(float(matcher.loss(1.0)))
        return sum(values) / len(values)
    finally:
        matcher.close()


def _diversity(images: torch.Tensor, labels: torch.Tensor) -> float:
    x = images.float().div(255.0).flatten(1)
    values = []
    for c in labels.unique():
        xc = x[labels == c][:100]
        if len(xc) > 1:
            d = torch.cdist(xc, xc) / math.sqrt(xc.shape[1])
            values.append(d.sum() / (len(xc) * (len(xc) - 1)))
    return float(torch.stack(values).mean()) if values else 0.0


def _final_stats(model, images, labels, sizes, history, seconds, has_bn) -> SynthesisStats:  # noqa: ANN001
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = images.float().div(255.0)
    with torch.no_grad():
        probs = torch.cat(
            [
                model(x[i : i + 256].to(device)).float().softmax(1).cpu()
                for i in range(0, len(x), 256)
            ]
        )
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    bn_final = (
        [bn_loss(model, x[a:b], batch_size=b - a) for a, b in zip(bounds, bounds[1:])]
        if has_bn
        else []
    )
    curve = torch.tensor(history, dtype=torch.float64).mean(0).tolist() if has_bn else []
    return SynthesisStats(
        has_batchnorm=has_bn,
        bn_loss_history=tuple(float(v) for v in curve),
        bn_loss=float(sum(bn_final) / len(bn_final)) if bn_final else float("nan"),
        agreement=float((probs.argmax(1) == labels).float().mean()),
        confidence=float(probs.gather(1, labels[:, None]).mean()),
        diversity=_diversity(images, labels),
        seconds=seconds,
    )


def invert(
    model: nn.Module,
    *,
    n: int,
    config: SynthesisConfig,
    seed: int,
    device: torch.device,
    progress: bool,
    size: int = DEFAULT_SIDE,
) -> tuple[torch.Tensor, torch.Tensor, SynthesisStats, int]:
    """Recover ``n`` uint8 images ``[n, 3, size, size]`` with balanced labels from ``model`` (the
    logit grid keeps ``config.resolution``); see the module doc."""
    if config.resolution > size:
        raise ConfigError(
            f"synthesis resolution {config.resolution} exceeds the model's image side {size}"
        )
    on_device = next((p.device for p in model.parameters()), device) == device
    net = (model if on_device else copy.deepcopy(model).to(device)).eval()
    k = probe_num_classes(net, device=device, size=size)
    sizes = batch_sizes(n, config.batch_size)
    has_bn = bool(batchnorm_layers(net))
    objective = _Objective(net, config)
    images, labels, curves = [], [], []
    t0 = time.perf_counter()
    try:
        with progress_bar("synthesizing", total=len(sizes) * config.steps, enabled=progress) as bar:
            for i, count in enumerate(sizes):
                gen = _batch_generator(seed, i)
                y = _balanced_labels(count, k, gen)
                imgs, curve = _optimise_batch(objective, y.to(device), config, gen, bar, size)
                images.append(imgs)
                labels.append(y)
                curves.append(curve)
    finally:
        objective.close()
    seconds = time.perf_counter() - t0
    images_t, labels_t = torch.cat(images), torch.cat(labels)
    stats = _final_stats(net, images_t, labels_t, sizes, curves, seconds, has_bn)
    return images_t, labels_t, stats, k
