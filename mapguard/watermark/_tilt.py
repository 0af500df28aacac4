"""Owner side of the channels on natural inputs (issue 15, experimental; see
``verification._tilt``): the keyed cosine tilt and the keyed pair preferences.

``boundary_images`` builds the committed labels-only query set: mixtures of two held-out images
of different classes at the point where the *original* model's answer switches between them
(found by bisection, before any secret is drawn, so the set does not depend on the secrets).
``torch_tilt`` / ``torch_preference`` compute a key's logit shift in torch, and ``embed_tilt``
teaches the model ``logits + eps * shift(x)``: this recipe changes weights, so it
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
from verification.tilt import (
    CosineTiltFamily,
    PairPreferenceFamily,
    PreferenceKey,
    PreferenceReference,
    TiltKey,
    TiltReference,
    dct_basis,
)

__all__ = [
    "BoundarySet",
    "TiltRecipe",
    "boundary_images",
    "embed_tilt",
    "torch_preference",
    "torch_tilt",
]


@dataclass(frozen=True, kw_only=True)
class TiltRecipe:
    """How the tilt is taught: strength ``eps`` (logits), Adam ``lr``, ``epochs`` over the
    owner's training images, each batch doubled with mixtures of two of its images when
    ``mixup`` (the tilt must hold between the classes too, where a boundary is decided).

    ``boundary`` > 0 adds that many *training-set* boundary mixtures (two training images of
    different classes mixed where the original model's answer switches, found once before
    teaching; the committed verification set is never used) to every epoch, and ``pair_weight``
    adds the squared error of the candidate pair's logit gap there: at a switch point the
    original's gap is zero, so that gap is what decides a labels-only answer."""

    eps: float = 1.0
    epochs: int = 8
    lr: float = 1e-3
    batch_size: int = 64
    mixup: bool = True
    boundary: int = 0
    pair_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.boundary < 0 or self.pair_weight < 0:
            raise ValueError("boundary and pair_weight must be >= 0")
        if self.pair_weight > 0 and self.boundary == 0:
            raise ValueError("pair_weight needs boundary mixtures (boundary > 0)")


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


class _Features(nn.Module):
    """``lowfreq_features`` in torch: ``[n, 3, side, side]`` -> ``[n, D]``."""

    def __init__(self, side: int, grid: int, coefficients: list[tuple[int, int]]) -> None:
        super().__init__()
        self.register_buffer("basis", torch.tensor(dct_basis(side, grid), dtype=torch.float32))
        self.rows = [u for u, _ in coefficients]
        self.cols = [v for _, v in coefficients]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coef = torch.einsum("us,ncst,vt->ncuv", self.basis, x, self.basis)
        return coef[:, :, self.rows, self.cols].flatten(1)


def torch_tilt(family: CosineTiltFamily, key: TiltKey, ref: TiltReference, side: int) -> nn.Module:
    """A module mapping images ``[n, 3, side, side]`` to the key's tilts ``[n, C]``."""

    class _Tilt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = _Features(side, family.grid, family.coefficients)
            self.register_buffer("dirs", torch.tensor(key.directions, dtype=torch.float32))
            self.register_buffer("phase", torch.tensor(key.phases, dtype=torch.float32))
            self.register_buffer("mean", torch.tensor(ref.mean[0], dtype=torch.float32))
            self.register_buffer("std", torch.tensor(ref.std[0], dtype=torch.float32))
            self.omega = float(key.omega)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = (self.features(x) @ self.dirs - self.mean) / self.std
            return torch.cos(self.omega * z + self.phase)

    return _Tilt()


def torch_preference(
    family: PairPreferenceFamily,
    key: PreferenceKey,
    ref: PreferenceReference,
    side: int,
    original: nn.Module,
) -> nn.Module:
    """A module mapping images to the key's keyed logit shift ``[n, C]``: ``T_c(x) = sum_d
    pref(x; c, d) p_d(x)`` with ``p`` the frozen ``original`` model's probabilities, so that at a
    boundary between ``a`` and ``b`` the gap ``a - b`` moves by ``pref(x; a, b)``
    (``verification._tilt.preference``)."""

    class _Preference(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = _Features(side, family.grid, family.coefficients)
            f32 = torch.float32
            self.register_buffer("prefs", torch.tensor(key.prefs, dtype=f32))
            self.register_buffer("splits", torch.tensor(key.splits, dtype=f32))
            self.register_buffer("mean", torch.tensor(ref.mean, dtype=f32))
            self.register_buffer("std", torch.tensor(ref.std, dtype=f32))
            self.register_buffer("proj_std", torch.tensor(ref.proj_std[0], dtype=f32))
            self._original = (original.eval(),)  # not a submodule: never trained, never saved

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = ((self.features(x) - self.mean) / self.std) @ self.splits.T / self.proj_std
            w = torch.cat([z.new_ones(len(z), 1), torch.tanh(family.sharpness * z)], 1)
            w = w / family.regions**0.5
            with torch.no_grad():
                p = F.softmax(self._original[0](x), 1)
            return torch.einsum("nr,rcd,nd->nc", w, self.prefs, p)

    return _Preference()


def embed_tilt(
    model: nn.Module,
    images: torch.Tensor,
    tilt: nn.Module,
    recipe: TiltRecipe,
    *,
    seed: int,
    labels: torch.Tensor | None = None,
) -> nn.Module:
    """A copy of ``model`` fine-tuned so its centred logits follow ``model + eps * tilt``.

    BatchNorm statistics stay frozen (eval mode); the loss is the mean squared error of the
    per-image-centred logits, which weighs the small keyed term as much as the rest.
    ``labels`` (of ``images``) are needed only for ``recipe.boundary``.

    Raises:
        ValueError: ``recipe.boundary`` without ``labels``.
    """
    teacher = model.eval()
    student = copy.deepcopy(model).eval()
    opt = torch.optim.Adam(student.parameters(), lr=recipe.lr)
    gen = torch.Generator().manual_seed(seed)
    half = recipe.batch_size
    pool = _boundary_pool(teacher, images, labels, recipe.boundary, seed)
    for _ in range(recipe.epochs):
        perm = torch.randperm(len(images), generator=gen)
        bperm = None if pool is None else torch.randperm(len(pool[0]), generator=gen)
        n_steps = -(-len(images) // half)
        for step, i in enumerate(range(0, len(images), half)):
            x = images[perm[i : i + half]]
            if recipe.mixup:
                lam = torch.rand(len(x), 1, 1, 1, generator=gen)
                x = torch.cat([x, lam * x + (1 - lam) * x[torch.randperm(len(x), generator=gen)]])
            nb = 0
            if pool is not None:
                chunk = bperm[step * len(bperm) // n_steps : (step + 1) * len(bperm) // n_steps]
                xb, pairs = pool[0][chunk], pool[1][chunk]
                x, nb = torch.cat([x, xb]), len(xb)
            with torch.no_grad():
                target = teacher(x) + recipe.eps * tilt(x)
            out = student(x)
            loss = F.mse_loss(
                out - out.mean(1, keepdim=True), target - target.mean(1, keepdim=True)
            )
            if nb and recipe.pair_weight > 0:
                loss = loss + recipe.pair_weight * F.mse_loss(
                    _gap(out[-nb:], pairs), _gap(target[-nb:], pairs)
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return student.eval()


def _gap(logits: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, pairs[:, :1]) - logits.gather(1, pairs[:, 1:])


def _boundary_pool(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    if n == 0:
        return None
    if labels is None:
        raise ValueError("boundary mixtures for teaching need the training labels")
    bset = boundary_images(model, images, labels, n, seed=seed + 7919)
    return torch.tensor(bset.images, dtype=torch.float32) / 255, torch.tensor(bset.pairs)
