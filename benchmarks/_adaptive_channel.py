"""Adaptive thieves against the channels on natural inputs (issue 15, item 4).

They know the method — the keyed term lives where two classes meet — but not the key:

- ``smooth``: the stolen model served behind randomized smoothing, answering the mean softmax of
  ``n`` copies of each input with Gaussian pixel noise (``sigma``): the boundary is averaged
  over a neighbourhood, which washes out a term that changes faster than ``sigma``;
- ``mixup-ft``: the stolen weights fine-tuned on the thief's own labelled images (a fraction of
  the owner's training split) with mixup on the *true* labels, so the boundary between two
  classes is pinned at the middle of every mixture — where the keyed term moved it.

And one *stronger copier* (not aimed at the mark): ``extract-mixup``, hard-label extraction into a
fresh model whose queries are the thief's images *and* random mixtures of two of them (the
answers near the boundaries are where a keyed behaviour shows, so a thief who asks there copies
more of it — the question is whether the weak inheritance under plain extraction is the thief's
query distribution).

All keep their clean accuracy measured like every other row; none sees a secret.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ADAPTIVE", "adaptive_copy"]

#: (row name, kind, options)
ADAPTIVE = (
    ("smooth sigma 0.1", "smooth", {"sigma": 0.1, "n": 8}),
    ("mixup-ft-10%", "mixup-ft", {"fraction": 0.1, "epochs": 10, "lr": 0.01}),
    ("extract-mixup", "extract-mixup", {"epochs": 10, "lr": 0.05}),
)


class _Smoothed(nn.Module):
    """Mean probabilities over ``n`` noisy copies (seeded per call size: deterministic)."""

    def __init__(self, model: nn.Module, sigma: float, n: int) -> None:
        super().__init__()
        self.model, self.sigma, self.n = model, sigma, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(len(x))
        probs = 0
        for _ in range(self.n):
            noise = torch.randn(x.shape, generator=gen) * self.sigma
            probs = probs + F.softmax(self.model((x + noise).clamp(0, 1)), 1)
        return torch.log(probs / self.n)


def _mixup_finetune(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, seed: int
) -> nn.Module:
    net = copy.deepcopy(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    onehot = F.one_hot(y, int(y.max()) + 1).float()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 32):
            idx = perm[i : i + 32]
            other = idx[torch.randperm(len(idx), generator=gen)]
            lam = torch.rand(len(idx), 1, generator=gen)
            xb = lam.view(-1, 1, 1, 1) * x[idx] + (1 - lam.view(-1, 1, 1, 1)) * x[other]
            target = lam * onehot[idx] + (1 - lam) * onehot[other]
            loss = torch.sum(-target * F.log_softmax(net(xb), 1), 1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def _extract_mixup(
    victim: nn.Module, x: torch.Tensor, arch: str, *, epochs: int, lr: float, seed: int
) -> nn.Module:
    from mapguard.models import create_model
    from mapguard.training import augment_batch, predict_logits

    torch.manual_seed(seed)
    net = create_model(arch, num_classes=10).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            xb = augment_batch(x[perm[i : i + 64]], gen)
            lam = torch.rand(len(xb), 1, 1, 1, generator=gen)
            mixed = lam * xb + (1 - lam) * xb[torch.randperm(len(xb), generator=gen)]
            queries = torch.cat([xb, mixed])
            with torch.no_grad():
                labels = predict_logits(victim.eval(), queries).argmax(1)
            loss = F.cross_entropy(net(queries), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def adaptive_copy(
    model: nn.Module,
    kind: str,
    opts: dict,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seed: int,
    arch: str,
) -> nn.Module:
    """The adaptive thief's copy of ``model``; ``x``, ``y``: the owner's training split (the
    thief holds a seeded ``fraction`` of it); ``arch``: a fresh student's architecture."""
    if kind == "smooth":
        return _Smoothed(model.eval(), opts["sigma"], opts["n"]).eval()
    if kind == "mixup-ft":
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        pick = pick[: max(1, int(opts["fraction"] * len(x)))]
        return _mixup_finetune(
            model, x[pick], y[pick], epochs=opts["epochs"], lr=opts["lr"], seed=seed
        )
    if kind == "extract-mixup":
        return _extract_mixup(model, x, arch, epochs=opts["epochs"], lr=opts["lr"], seed=seed)
    raise ValueError(f"unknown adaptive thief {kind!r}")
