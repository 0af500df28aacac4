"""Optimisers for mask scores (a registry: ``MaskConfig.optimizer`` names one)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from mapguard._errors import ConfigError

__all__ = ["OPTIMIZERS", "LayerAdam", "make_optimizer"]


class LayerAdam(torch.optim.Optimizer):
    """Adam with one second-moment estimate per *tensor* instead of per element.

    Per-element Adam moves every score by about ``lr`` per step whatever the size of its gradient,
    so at the all-ones start (where the keep KL has zero gradient) every weight the degrade term
    touches heads for the threshold at the same speed and thousands flip in the same step. With a
    per-tensor scale, a score moves at ``lr * |m_i| / rms(g_layer)``: within a layer, weights with
    large gradients flip first and the keep term can react before the rest follow; across layers
    the steps stay balanced.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-12,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # noqa: D102
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["t"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros(())
                state["t"] += 1
                t, m = state["t"], state["m"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                state["v"] = b2 * state["v"] + (1 - b2) * p.grad.float().pow(2).mean()
                scale = (state["v"] / (1 - b2**t)).sqrt().add_(group["eps"])
                p.add_(m / (1 - b1**t), alpha=-group["lr"] / float(scale))


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "layer-adam": lambda params, lr: LayerAdam(params, lr=lr),
}


def make_optimizer(name: str, params: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr)
