"""Boundary-aware synthesis: images move to where a model and its masked copy disagree, and the
per-image BatchNorm score ranks real digits above noise."""

from __future__ import annotations

import torch
from torch.func import functional_call

from mapguard.synthesis import (
    boundary_samples,
    class_mixtures,
    js_divergence,
    sample_bn_scores,
)


def _masked(model: torch.nn.Module):
    """The model with every other weight of its first conv layer zeroed (a crude mask)."""
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    first = next(n for n, p in params.items() if p.ndim == 4)
    params[first].view(-1)[::2] = 0
    return lambda x: functional_call(model, params, (x,), strict=False)


def test_boundary_samples_raise_the_disagreement(tiny_model, mnist_small) -> None:
    model = tiny_model.eval()
    x, y = mnist_small[1].floats()[:40], mnist_small[1].labels[:40]
    start = class_mixtures(x, y, 16, torch.Generator().manual_seed(0))
    masked = _masked(model)
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    moved = boundary_samples(model, masked, start, steps=15)
    with torch.no_grad():
        before = js_divergence(model(start), masked(start)).mean()
        after = js_divergence(model(moved), masked(moved)).mean()
    assert moved.shape == start.shape and 0.0 <= moved.min() and moved.max() <= 1.0
    assert after > 2 * before, (float(before), float(after))
    again = boundary_samples(model, masked, start, steps=15)
    assert torch.equal(moved, again)  # deterministic
    for g, p in zip(grads, model.parameters()):  # no gradient reaches the model
        assert (g is None and p.grad is None) or torch.equal(g, p.grad)


def test_class_mixtures_mix_two_different_classes() -> None:
    x = torch.eye(4).repeat_interleave(2, 0).view(8, 1, 2, 2)  # one-hot "images", 2 per class
    y = torch.arange(4).repeat_interleave(2)
    mix = class_mixtures(x, y, 50, torch.Generator().manual_seed(1))
    nonzero = (mix.flatten(1) > 0).sum(1)
    assert (nonzero == 2).all()  # two different classes in every mixture
    assert ((mix.flatten(1).max(1).values >= 0.5) & (mix.flatten(1).max(1).values <= 0.65)).all()


def test_sample_bn_scores_rank_digits_above_noise(tiny_model, mnist_small) -> None:
    digits = mnist_small[1].floats()[:30]
    noise = torch.rand(30, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    s_digits, s_noise = sample_bn_scores(tiny_model, digits), sample_bn_scores(tiny_model, noise)
    assert s_digits.shape == (30,) and s_digits.median() < s_noise.median()
