"""Neighbour-domain families: label-preserving appearance shifts drawn fresh at every step.

A family turns a batch of float images ``[B, 3, H, W]`` in ``[0, 1]`` into images of the same
digits (classes) in a *different domain*. Every parameter is drawn from a broad, generic range
from the generator it is given; none is tuned to any evaluation domain (there is deliberately no
down-sampling or blur family: it would encode knowledge of low-resolution domains such as
optdigits). DF-MAP degrades the model on these neighbours while preserving the pseudo-source.

Image families implement :meth:`NeighbourFamily.apply`. The feature-statistics family
(:class:`FeatureStyleShift`, AdaIN-style) acts on the first layer's activations instead and is
applied by a forward hook (:class:`FeatureShiftHook`). :func:`neighbour_sets` shows every image
family on a set of images (the synthesis picture grid).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mapguard._errors import ConfigError
from mapguard.data import ImageSet

__all__ = [
    "FeatureShiftHook",
    "FeatureStyleShift",
    "NeighbourFamily",
    "create_family",
    "first_conv",
    "list_families",
    "neighbour_sets",
    "register_family",
]

_FAMILIES: dict[str, Callable[[], NeighbourFamily]] = {}


def register_family(name: str) -> Callable[[type], type]:
    """Class decorator: register a :class:`NeighbourFamily` (no-argument constructor) by name."""

    def deco(cls: type) -> type:
        if name in _FAMILIES:
            raise ValueError(f"neighbour family '{name}' is already registered")
        cls.name = name
        _FAMILIES[name] = cls
        return cls

    return deco


def list_families() -> list[str]:
    """Names of the registered families, sorted."""
    return sorted(_FAMILIES)


def create_family(name: str) -> NeighbourFamily:
    """A new instance of family ``name``.

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
    """
    if name not in _FAMILIES:
        raise ConfigError(
            f"unknown neighbour family '{name}'; choose one of: {', '.join(list_families())}"
        )
    return _FAMILIES[name]()


class NeighbourFamily(ABC):
    """One kind of label-preserving domain shift (one hook: :meth:`apply`)."""

    name: str = "family"
    #: True for families that act on features (applied by a hook), not on pixels.
    acts_on_features: bool = False

    @abstractmethod
    def apply(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Shifted images, same shape, values in ``[0, 1]``; randomness only from ``gen``."""


def _u(gen: torch.Generator, low: float, high: float, *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(*(shape or (1,)), generator=gen)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-image rescale to the full ``[0, 1]`` range."""
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-6)


def smooth_noise(n: int, side: int, gen: torch.Generator, *, channels: int = 3) -> torch.Tensor:
    """Random smooth colour fields: Gaussian noise on a random coarse grid, upsampled, in [0, 1]."""
    coarse = int(torch.randint(2, 9, (1,), generator=gen))
    z = torch.randn(n, channels, coarse, coarse, generator=gen)
    up = F.interpolate(z, size=(side, side), mode="bicubic", align_corners=False)
    return _minmax(up)


@register_family("random_conv")
class RandomConv(NeighbourFamily):
    """A random convolution (Xu et al., ICLR 2021): random kernel size 1-7, Gaussian weights,
    output rescaled to [0, 1] and mixed with the input by a random weight."""

    def apply(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        k = int(torch.randint(0, 4, (1,), generator=gen)) * 2 + 1
        weight = torch.randn(3, 3, k, k, generator=gen) / math.sqrt(3 * k * k)
        y = _minmax(F.conv2d(x - 0.5, weight.to(x), padding=k // 2))
        alpha = _u(gen, 0.5, 1.0, x.shape[0], 1, 1, 1).to(x)
        return alpha * y + (1 - alpha) * x


@register_family("colour")
class ColourJitter(NeighbourFamily):
    """Random channel mixing (colourisation), gamma, contrast and brightness, inversion (p=0.5)."""

    def apply(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        mix = (torch.eye(3) + _u(gen, -0.8, 0.8, n, 3, 3)).to(x)
        y = torch.einsum("bij,bjhw->bihw", mix, x) + _u(gen, -0.3, 0.3, n, 3, 1, 1).to(x)
        y = _minmax(y) ** _u(gen, 0.5, 2.0, n, 1, 1, 1).to(x)
        contrast = _u(gen, 0.4, 1.0, n, 1, 1, 1).to(x)
        y = 0.5 + (y - 0.5) * contrast + _u(gen, -0.2, 0.2, n, 1, 1, 1).to(x)
        invert = (torch.rand(n, 1, 1, 1, generator=gen) < 0.5).to(x)
        y = invert * (1 - y) + (1 - invert) * y
        return y.clamp(0, 1)


@register_family("texture")
class TextureBlend(NeighbourFamily):
    """Blend with random smooth-noise textures: linear mix, multiply, screen, or the image as
    an alpha matte of one texture over another (standard compositing modes)."""

    def apply(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, _, h, _ = x.shape
        t1, t2 = smooth_noise(n, h, gen).to(x), smooth_noise(n, h, gen).to(x)
        a = _u(gen, 0.3, 0.7, n, 1, 1, 1).to(x)
        grey = x.mean(1, keepdim=True)
        modes = torch.stack(
            [
                (1 - a) * x + a * t1,
                x * (0.3 + 0.7 * t1),
                1 - (1 - x) * (1 - a * t1),
                grey * t1 + (1 - grey) * t2,
            ]
        )
        pick = torch.randint(0, len(modes), (n,), generator=gen)
        return modes[pick, torch.arange(n)].clamp(0, 1)


@register_family("amplitude")
class AmplitudePerturbation(NeighbourFamily):
    """Perturb the Fourier amplitude spectrum (keep the phase): multiply it by a random smooth
    field and mix it with the amplitude of another image of the batch (Xu et al., CVPR 2021)."""

    def apply(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        spec = torch.fft.fft2(x.float())
        amp, phase = spec.abs(), spec.angle()
        other = amp[torch.randperm(n, generator=gen)]
        lam = _u(gen, 0.0, 1.0, n, 1, 1, 1)
        scale = torch.exp(_u(gen, 0.2, 1.0, n, 1, 1, 1) * torch.randn(amp.shape, generator=gen))
        amp = ((1 - lam) * amp + lam * other) * scale
        y = torch.fft.ifft2(torch.polar(amp, phase)).real
        return _minmax(y).to(x)


class FeatureStyleShift:
    """AdaIN-style shift of first-layer feature statistics (Huang & Belongie, ICCV 2017).

    Each channel of each image is renormalised to a random new mean and standard deviation:
    ``f' = sigma' * (f - mu(f)) / sigma(f) + mu'`` with ``mu' = mu + s_mu * sigma_batch * e1`` and
    ``sigma' = sigma * exp(s_sigma * e2)``, ``e ~ N(0, 1)``; strength ``s`` drawn per image.
    """

    name = "feature_stats"

    def __call__(self, f: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, c = f.shape[:2]
        mu = f.mean(dim=(2, 3), keepdim=True)
        sigma = f.std(dim=(2, 3), keepdim=True) + 1e-5
        spread = mu.std(dim=0, keepdim=True) + sigma.mean(dim=0, keepdim=True)
        s = _u(gen, 0.5, 1.5, n, 1, 1, 1).to(f)
        new_mu = mu + s * spread * torch.randn(n, c, 1, 1, generator=gen).to(f)
        new_sigma = sigma * torch.exp(s * 0.7 * torch.randn(n, c, 1, 1, generator=gen).to(f))
        return new_sigma * (f - mu) / sigma + new_mu


class FeatureShiftHook:
    """Forward hook on the first conv layer applying :class:`FeatureStyleShift` to armed rows."""

    def __init__(self, module: nn.Module) -> None:
        self.shift = FeatureStyleShift()
        self.rows: torch.Tensor | None = None
        self.gen: torch.Generator | None = None
        self.handle = module.register_forward_hook(self._hook)

    def arm(self, rows: torch.Tensor, gen: torch.Generator) -> None:
        self.rows, self.gen = rows, gen

    def _hook(self, module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor | None:
        rows, gen = self.rows, self.gen
        self.rows = self.gen = None
        if rows is None or gen is None or len(rows) == 0 or out.shape[0] <= int(rows.max()):
            return None
        out = out.clone()
        out[rows.to(out.device)] = self.shift(out[rows.to(out.device)], gen)
        return out

    def close(self) -> None:
        self.handle.remove()


def first_conv(model: nn.Module) -> nn.Module | None:
    """The model's first ``nn.Conv2d`` (where :class:`FeatureShiftHook` goes), or None."""
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def neighbour_sets(
    pseudo: ImageSet, *, seed: int = 0, families: Sequence[str] | None = None
) -> list[ImageSet]:
    """One :class:`ImageSet` per image family: the pseudo-source shifted into neighbour domains
    (fresh parameters for every 4 images, as in DF-MAP's chunks)."""
    out = []
    for i, name in enumerate(families or list_families()):
        gen = torch.Generator().manual_seed(seed * 1009 + i)
        family, x = create_family(name), pseudo.floats()
        shifted = torch.cat([family.apply(x[j : j + 4], gen) for j in range(0, len(x), 4)])
        pixels = (shifted * 255).round().clamp(0, 255).to(torch.uint8)
        out.append(
            ImageSet(
                name=name, split="all", images=pixels, labels=pseudo.labels, classes=pseudo.classes
            )
        )
    return out
