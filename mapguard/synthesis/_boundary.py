"""Boundary-aware synthesis: images where a model and its masked copy disagree.

:func:`boundary_samples` starts from given images (typically mixtures of two pseudo-source
classes, :func:`class_mixtures`, in the style of Qimera, Choi et al., NeurIPS 2021) and moves
them, in logit space ``x = sigmoid(z)``, to maximise the Jensen-Shannon divergence between the
original model ``f`` and the masked model ``f_M`` (Adaptive DeepInversion's competition term,
Yin et al., CVPR 2020; the hard samples of DFAD, Fang et al. 2019) under the BatchNorm-statistics
prior of ``f`` and a smoothness prior:

    L(z) = - JS(f(x) || f_M(x)) + bn * (sum_l d_l^f(x)) + tv * TV2(x)

:func:`sample_bn_scores` scores every image by how far its own per-channel feature means sit
from ``f``'s running statistics (in running standard deviations, averaged over BN layers): the
low-score, in-distribution-like samples are the ones that carry the source's knowledge (as ATEsc,
ICML 2025, found for data-free distillation), so callers keep those.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mapguard.synthesis._hooks import BNMatcher, batchnorm_layers
from mapguard.synthesis._invert import squared_tv

__all__ = ["boundary_samples", "class_mixtures", "js_divergence", "sample_bn_scores"]

_EPS = 1e-4


def js_divergence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Jensen-Shannon divergence between the softmax outputs of logits ``a`` and ``b``."""
    pa, pb = F.softmax(a.float(), 1), F.softmax(b.float(), 1)
    m = (0.5 * (pa + pb)).clamp_min(1e-8).log()
    return 0.5 * (F.kl_div(m, pa, reduction="none") + F.kl_div(m, pb, reduction="none")).sum(1)


def class_mixtures(
    x: torch.Tensor, y: torch.Tensor, n: int, gen: torch.Generator, *, low: float = 0.35
) -> torch.Tensor:
    """``n`` mixtures ``l*a + (1-l)*b`` of two images of *different* classes (``l ~ U(low,
    1-low)``): points between two classes, near the boundary that separates them."""
    i = torch.randint(0, len(x), (n,), generator=gen)
    j = torch.randint(0, len(x), (n,), generator=gen)
    same = y[i] == y[j]
    j[same] = (j[same] + torch.randint(1, len(x), (int(same.sum()),), generator=gen)) % len(x)
    lam = low + (1 - 2 * low) * torch.rand(n, 1, 1, 1, generator=gen)
    return lam * x[i] + (1 - lam) * x[j]


def boundary_samples(
    model: nn.Module,
    masked: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    *,
    steps: int = 30,
    lr: float = 0.1,
    bn: float = 0.1,
    tv: float = 1.0,
) -> torch.Tensor:
    """Move ``start`` images where ``model`` and ``masked`` (a callable giving the masked model's
    logits, differentiable in its input) disagree most, under the BN and TV priors.

    Deterministic given its inputs (no randomness is drawn). Returns images in ``[0, 1]``, on
    the CPU, detached.
    """
    device = next(model.parameters()).device
    z = torch.logit(start.clamp(_EPS, 1 - _EPS)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    frozen = {n: p.detach() for n, p in model.named_parameters()}  # no gradient into the model
    matcher = BNMatcher(model) if bn > 0 else None
    try:
        for _ in range(steps):
            x = torch.sigmoid(z)
            if matcher is not None:
                matcher.reset()
            ref = functional_call(model, frozen, (x,), strict=False)
            prior = matcher.loss() if matcher is not None else x.new_zeros(())
            loss = -js_divergence(ref, masked(x)).mean() + bn * prior + tv * squared_tv(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        if matcher is not None:
            matcher.close()
    return torch.sigmoid(z).detach().cpu()


class _SampleStats:
    """Per image, the mean squared standardised deviation of its per-channel means from a BN
    layer's running mean, summed over layers."""

    def __init__(self, model: nn.Module) -> None:
        self.score: torch.Tensor | None = None
        self.layers = batchnorm_layers(model)
        self._handles = [m.register_forward_pre_hook(self._hook) for m in self.layers]

    def _hook(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].float()
        mean = x.mean(dim=tuple(range(2, x.ndim))) if x.ndim > 2 else x
        z = (mean - module.running_mean) / (module.running_var + module.eps).sqrt()
        s = z.pow(2).mean(1).cpu()
        self.score = s if self.score is None else self.score + s

    def close(self) -> None:
        for h in self._handles:
            h.remove()


@torch.no_grad()
def sample_bn_scores(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Per-image distance of ``x`` from ``model``'s BatchNorm statistics (lower: more
    in-distribution-like); zeros for a model without BatchNorm."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(x), batch_size):
        hook = _SampleStats(model)
        try:
            model(x[i : i + batch_size].to(device))
        finally:
            hook.close()
        part = hook.score if hook.score is not None else torch.zeros(len(x[i : i + batch_size]))
        out.append(part / max(1, len(hook.layers)))
    return torch.cat(out) if out else torch.zeros(0)
