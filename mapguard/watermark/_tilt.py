"""Owner side of the keyed cosine tilt (issue 15, experimental; see ``verification._tilt``).

``boundary_images`` builds the committed labels-only query set: mixtures of two held-out images
of different classes at the point where the *original* model's answer switches between them
(found by bisection, before any secret is drawn, so the set does not depend on the secrets).
``embed_tilt`` teaches the model ``logits + eps * tilt(x)``: this recipe changes weights, so it
is a separate recipe, not the MAP mask (whether a mask over frozen weights can express the
smooth keyed term has not been tried yet).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mapguard.training import predict_logits
from verification.tilt import CosineTiltFamily, TiltKey, TiltReference, dct_basis

__all__ = ["BoundarySet", "TiltRecipe", "boundary_images", "embed_tilt", "torch_tilt"]


@dataclass(frozen=True, kw_only=True)
class TiltRecipe:
    """How the tilt is taught: strength ``eps`` (logits), Adam ``lr``, ``epochs`` over the
    owner's training images, each batch doubled with mixtures of two of its images when
    ``mixup`` (the tilt must hold between the classes too, where a boundary is decided)."""

    eps: float = 1.0
    epochs: int = 8
    lr: float = 1e-3
    batch_size: int = 64
    mixup: bool = True


@dataclass(frozen=True)
class BoundarySet:
    """Committed boundary images ``[n, 3, S, S]`` uint8 and candidate class ``pairs`` ``[n, 2]``."""

    images: np.ndarray
    pairs: np.ndarray


@torch.no_grad()
def boundary_images(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, n: int, *, seed: int,
    steps: int = 10,
) -> BoundarySet:  # fmt: skip
    """``n`` mixtures at ``model``'s switch point between two correctly answered images of
    different classes (pairs drawn with ``seed``; bisection over all pairs at once).

    Raises:
        ValueError: fewer than two classes are answered correctly.
    """
    model = model.eval()
    gen = torch.Generator().manual_seed(seed)
    ok = torch.nonzero(predict_logits(model, images).argmax(1) == labels).flatten()
    if len(torch.unique(labels[ok])) < 2:
        raise ValueError("boundary images need correctly answered images of two classes")
    a, b = (
        ok[torch.randint(len(ok), (4 * n,), generator=gen)],
        ok[torch.randint(len(ok), (4 * n,), generator=gen)],
    )
    keep = torch.nonzero(labels[a] != labels[b]).flatten()[:n]
    a, b = a[keep], b[keep]
    xa, xb, ya = images[a], images[b], labels[a]
    lo, hi = torch.zeros(len(a)), torch.ones(len(a))
    for _ in range(steps):
        mid = (lo + hi) / 2
        same = predict_logits(model, xa + mid.view(-1, 1, 1, 1) * (xb - xa)).argmax(1) == ya
        lo, hi = torch.where(same, mid, lo), torch.where(same, hi, mid)
    alpha = ((lo + hi) / 2).view(-1, 1, 1, 1)
    mixed = (xa + alpha * (xb - xa)).mul(255).round().to(torch.uint8)
    return BoundarySet(mixed.numpy(), torch.stack([ya, labels[b]], 1).numpy().astype(np.int64))


def torch_tilt(family: CosineTiltFamily, key: TiltKey, ref: TiltReference, side: int) -> nn.Module:
    """A module mapping images ``[n, 3, side, side]`` to the key's tilts ``[n, C]``."""

    class _Tilt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            basis = torch.tensor(dct_basis(side, family.grid), dtype=torch.float32)
            keep = family.coefficients
            self.register_buffer("basis", basis)
            self.rows = [u for u, _ in keep]
            self.cols = [v for _, v in keep]
            self.register_buffer("dirs", torch.tensor(key.directions, dtype=torch.float32))
            self.register_buffer("phase", torch.tensor(key.phases, dtype=torch.float32))
            self.register_buffer("mean", torch.tensor(ref.mean[0], dtype=torch.float32))
            self.register_buffer("std", torch.tensor(ref.std[0], dtype=torch.float32))
            self.omega = float(key.omega)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            coef = torch.einsum("us,ncst,vt->ncuv", self.basis, x, self.basis)
            feats = coef[:, :, self.rows, self.cols].flatten(1)
            z = (feats @ self.dirs - self.mean) / self.std
            return torch.cos(self.omega * z + self.phase)

    return _Tilt()


def embed_tilt(
    model: nn.Module, images: torch.Tensor, tilt: nn.Module, recipe: TiltRecipe, *, seed: int
) -> nn.Module:
    """A copy of ``model`` fine-tuned so its centred logits follow ``model + eps * tilt``.

    BatchNorm statistics stay frozen (eval mode); the loss is the mean squared error of the
    per-image-centred logits, which weighs the small keyed term as much as the rest.
    """
    teacher = model.eval()
    student = copy.deepcopy(model).eval()
    opt = torch.optim.Adam(student.parameters(), lr=recipe.lr)
    gen = torch.Generator().manual_seed(seed)
    half = recipe.batch_size
    for _ in range(recipe.epochs):
        perm = torch.randperm(len(images), generator=gen)
        for i in range(0, len(images), half):
            x = images[perm[i : i + half]]
            if recipe.mixup:
                lam = torch.rand(len(x), 1, 1, 1, generator=gen)
                x = torch.cat([x, lam * x + (1 - lam) * x[torch.randperm(len(x), generator=gen)]])
            with torch.no_grad():
                target = teacher(x) + recipe.eps * tilt(x)
            out = student(x)
            loss = F.mse_loss(
                out - out.mean(1, keepdim=True), target - target.mean(1, keepdim=True)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return student.eval()
