"""Forward hooks that read a frozen model's BatchNorm inputs and penultimate features."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BNMatcher", "PenultimateHook", "batchnorm_layers"]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """BatchNorm layers that track running statistics, in forward-registration order."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    ]


class BNMatcher:
    """Per forward pass, how far each BN layer's batch statistics are from its running ones.

    After a forward pass, :attr:`distances` holds one scalar per BN layer:
    ``||mean_b(x) - running_mean||_2 + ||var_b(x) - running_var||_2`` (Yin et al. 2020), computed
    over the batch and spatial dimensions of the layer's input.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = batchnorm_layers(model)
        self.distances: list[torch.Tensor] = []
        self._handles = [m.register_forward_pre_hook(self._hook) for m in self.layers]

    def _hook(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].float()
        dims = [0, *range(2, x.ndim)]
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        dist = torch.linalg.vector_norm(mean - module.running_mean) + torch.linalg.vector_norm(
            var - module.running_var
        )
        self.distances.append(dist)

    def reset(self) -> None:
        self.distances = []

    def loss(self, first_scale: float = 1.0) -> torch.Tensor:
        """``first_scale * d_1 + sum_{l>1} d_l`` for the last forward pass (0 without BN)."""
        if not self.distances:
            return torch.zeros(())
        scales = [first_scale] + [1.0] * (len(self.distances) - 1)
        return sum(s * d for s, d in zip(scales, self.distances))  # type: ignore[return-value]

    def close(self) -> None:
        for h in self._handles:
            h.remove()


class PenultimateHook:
    """Captures the input of the model's last ``nn.Linear`` (its penultimate features)."""

    def __init__(self, model: nn.Module) -> None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.features: torch.Tensor | None = None
        self._handle = linears[-1].register_forward_pre_hook(self._hook) if linears else None

    @property
    def available(self) -> bool:
        return self._handle is not None

    def _hook(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.features = args[0].flatten(1)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
