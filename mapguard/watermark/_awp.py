"""Adversarial weight perturbation of the watermark (issue 15 item 2, experimental, off).

FTAL at lr 0.05 and RTAL remove the trigger watermark: the thief's weights leave the small
neighbourhood where the mask's trigger behaviour holds. Weight noise (``mask.weight_noise``)
widens that neighbourhood in random directions; :class:`AdversarialWeightTerm`
(``EmbedConfig.awp`` > 0) widens it in the *worst* direction, after Gan et al., "Towards Robust
Model Watermark via Reducing Parametric Vulnerability" (ICCV 2023): each step it takes one
normalised gradient-ascent step on the secret triggers' loss in every masked weight (size
``awp`` times the layer's norm), and asks the secret-stamped images to still reach their
targets at the perturbed weights. First-order: the perturbation is detached, so the gradient
reaches the mask scores through the masked weights it starts from. The analysis is untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.func import functional_call

from mapguard._errors import ConfigError
from mapguard.masking import Batch, BatchSource, ObjectiveTerm, StepView
from mapguard.masking._adversary import _masked_params, batch_norm_mode
from mapguard.masking._distributed import DistInfo
from mapguard.masking._learner import _endless
from mapguard.masking._parametrize import MaskedModel

__all__ = ["AdversarialWeightTerm", "awp_terms"]


@dataclass(eq=False, kw_only=True)
class AdversarialWeightTerm(ObjectiveTerm, name="awp"):
    """``mean CE_floor(f_{θ + δ}(stamp_secret(x)), t)`` with ``δ`` the worst-case (first-order)
    perturbation of the masked weights of relative size ``radius`` per layer.

    Attributes:
        weight: The term's weight.
        secrets: Secret-stamped source images labelled with their targets.
        radius: Per-layer perturbation norm as a fraction of the layer's masked-weight norm.
        batch: Secret-stamped images per step.
        floor: Per-image cross-entropy floor.
    """

    weight: float
    secrets: BatchSource = field(repr=False)
    radius: float = 0.05
    batch: int = 32
    floor: float = 0.05
    _masked: MaskedModel | None = field(default=None, init=False, repr=False)
    _iter: Iterator[Batch] | None = field(default=None, init=False, repr=False)

    def bind(self, masked: MaskedModel) -> None:
        """Called by the learner once: the masked model whose mask is being learned."""
        self._masked = masked

    def value(self, view: StepView) -> torch.Tensor:
        if self._masked is None:
            raise ConfigError("AdversarialWeightTerm was not bound to a masked model")
        device = view.keep_logits.device
        if self._iter is None:
            self._iter = _endless(self.secrets, self.batch, DistInfo())
        b = next(self._iter)
        x, t = b.x.to(device), b.y.to(device)
        model = self._masked.original
        theta = _masked_params(self._masked)
        names = list(self._masked.scores.masks())
        buffers = {n: v.detach() for n, v in model.named_buffers()}
        with batch_norm_mode(model, False):
            leaf = {n: theta[n].detach().requires_grad_() for n in names}
            fixed = {n: p.detach() for n, p in theta.items() if n not in leaf}
            out = functional_call(model, {**fixed, **leaf, **buffers}, (x,))
            grads = torch.autograd.grad(F.cross_entropy(out.float(), t), list(leaf.values()))
            adv = dict(theta)
            for (n, w), g in zip(leaf.items(), grads, strict=True):
                step = self.radius * w.norm() * g / (g.norm() + 1e-12)
                adv[n] = theta[n] + step.detach()
            logits = functional_call(model, {**adv, **buffers}, (x,)).float()
        return F.cross_entropy(logits, t, reduction="none").clamp(min=self.floor).mean()


def awp_terms(secrets: BatchSource, *, radius: float, weight: float, batch: int) -> list:
    """The term of ``EmbedConfig.awp`` (``radius`` > 0), or none."""
    if radius <= 0:
        return []
    return [AdversarialWeightTerm(weight=weight, secrets=secrets, radius=radius, batch=batch)]
