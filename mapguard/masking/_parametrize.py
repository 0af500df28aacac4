"""Mask parametrisation: real-valued scores, binarised in the forward pass (straight-through).

The original model is never modified: :class:`MaskedModel` runs it with
:func:`torch.func.functional_call`, substituting ``weight * mask`` for each masked weight.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

from mapguard._errors import ConfigError, ModelFileError

__all__ = ["MaskScores", "MaskedModel", "binarize", "maskable_weights", "score_shape"]

# Which parameters of which layer types are masked: the weights that multiply the input. Biases,
# normalisation layers (BatchNorm/LayerNorm/GroupNorm), embeddings such as a ViT's class token and
# position embedding, and buffers (the input ``Normalize``) stay frozen and unmasked. A
# MultiheadAttention holds its q/k/v projection as ``in_proj_weight`` (or ``q/k/v_proj_weight``
# when key/value dimensions differ; the unused ones are ``None``); its ``out_proj`` is a Linear.
_MASKED_PARAMS: tuple[tuple[type[nn.Module], tuple[str, ...]], ...] = (
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear), ("weight",)),
    (nn.MultiheadAttention, ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")),
)


def _masked_params(module: nn.Module) -> list[str]:
    """Local names of ``module``'s own parameters that a mask covers."""
    for kinds, names in _MASKED_PARAMS:
        if isinstance(module, kinds):
            own = dict(module.named_parameters(recurse=False))
            return [n for n in names if n in own]
    return []


def maskable_weights(model: nn.Module, *, exclude: Sequence[str] = ()) -> list[str]:
    """Names of the weights a mask covers, in module order, minus those matched by ``exclude``.

    The weights are those of every Conv/Linear layer and the q/k/v input projections of every
    ``nn.MultiheadAttention`` (its output projection is a Linear). Patterns are fnmatch-style and
    tested against both the module name and the parameter name.

    Raises:
        ModelFileError: the model has no such weight left to mask.
    """
    names = []
    for mod_name, module in model.named_modules():
        for local in _masked_params(module):
            param = f"{mod_name}.{local}" if mod_name else local
            if not any(fnmatch.fnmatchcase(n, p) for p in exclude for n in (mod_name, param)):
                names.append(param)
    if not names:
        what = " (after --exclude)" if exclude else ""
        raise ModelFileError(f"model has no Conv/Linear/attention weight to mask{what}")
    return names


def score_shape(weight_shape: Sequence[int], granularity: str) -> tuple[int, ...]:
    """Shape of a layer's scores: the weight's own, or one per output channel (broadcastable)."""
    if granularity == "weight":
        return tuple(weight_shape)
    if granularity == "channel":
        return (weight_shape[0],) + (1,) * (len(weight_shape) - 1)
    raise ConfigError(f"unknown granularity {granularity!r}")


class _StraightThrough(torch.autograd.Function):
    """``1[s > t]`` forward; identity gradient backward (Bengio et al. 2013)."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, threshold: float) -> torch.Tensor:  # noqa: ANN001
        return (scores > threshold).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return grad, None


def binarize(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Hard 0/1 mask with a straight-through gradient to ``scores``."""
    return _StraightThrough.apply(scores, threshold)


class MaskScores(nn.Module):
    """Learnable scores for a set of named weights; the binary mask is ``scores > threshold``."""

    def __init__(
        self,
        shapes: dict[str, tuple[int, ...]],
        *,
        granularity: str = "weight",
        init: float = 1.0,
        threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.names = list(shapes)
        self.weight_shapes = {n: tuple(s) for n, s in shapes.items()}
        self.granularity, self.threshold = granularity, float(threshold)
        self.scores = nn.ParameterList(
            nn.Parameter(torch.full(score_shape(s, granularity), float(init)))
            for s in shapes.values()
        )
        fan = [
            int(torch.Size(s).numel()) // int(torch.Size(score_shape(s, granularity)).numel())
            for s in shapes.values()
        ]
        self.register_buffer("_fan", torch.tensor(fan, dtype=torch.float32), persistent=False)
        self.total_weights = int(sum(torch.Size(s).numel() for s in shapes.values()))

    def masks(self) -> dict[str, torch.Tensor]:
        """Binary masks (score shape) with straight-through gradients, keyed by weight name."""
        return {n: binarize(s, self.threshold) for n, s in zip(self.names, self.scores)}

    def pruned_fraction(self, masks: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Fraction of masked *weights* set to zero (differentiable through the STE)."""
        masks = self.masks() if masks is None else masks
        kept = sum(m.sum() * f for m, f in zip(masks.values(), self._fan))
        return 1.0 - kept / self.total_weights

    @torch.no_grad()
    def binary(self) -> dict[str, torch.Tensor]:
        """The current mask as boolean tensors of score shape (detached, on CPU)."""
        return {n: (s > self.threshold).cpu() for n, s in zip(self.names, self.scores)}


class MaskedModel(nn.Module):
    """``original`` run with masked weights; only :attr:`scores` are trainable.

    The original is *not* a registered submodule: its parameters are passed detached to
    :func:`~torch.func.functional_call`, so nothing about the caller's model changes (values,
    ``requires_grad`` flags, ``.grad``), and DistributedDataParallel sees only the scores. BatchNorm
    stays in eval mode (frozen running statistics) unless ``update_bn`` is set, in which case a
    private copy of the model is used so the caller's buffers are untouched too. With
    ``weight_noise`` each training forward pass multiplies the masked weights by
    ``1 + weight_noise * N(0, 1)`` (seeded generator; eval passes are noise-free).
    """

    def __init__(
        self,
        original: nn.Module,
        scores: MaskScores,
        *,
        update_bn: bool = False,
        weight_noise: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.update_bn, self.weight_noise, self.seed = update_bn, float(weight_noise), seed
        self._gen: torch.Generator | None = None
        self._frozen = (copy.deepcopy(original) if update_bn else original,)
        self.scores = scores
        params = dict(self.original.named_parameters())
        missing = [n for n in scores.names if n not in params]
        if missing:
            raise ModelFileError(f"mask names not in the model: {', '.join(missing)}")

    @property
    def original(self) -> nn.Module:
        """The frozen model the masks apply to (a private copy when ``update_bn``)."""
        return self._frozen[0]

    def train(self, mode: bool = True) -> MaskedModel:
        self.training = mode
        self.scores.train(mode)
        self.original.train(mode and self.update_bn)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the masked model."""
        params = {n: p.detach() for n, p in self.original.named_parameters()}
        noisy = self.training and self.weight_noise > 0
        for name, mask in self.scores.masks().items():
            w = params[name]
            if noisy:
                w = w * (1.0 + self.weight_noise * self._noise(w))
            params[name] = w * mask
        return functional_call(self.original, params, (x,), strict=False)

    def _noise(self, w: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like ``w`` from a generator seeded once per model."""
        if self._gen is None or self._gen.device != w.device:
            self._gen = torch.Generator(device=w.device).manual_seed(self.seed)
        return torch.randn(w.shape, generator=self._gen, device=w.device, dtype=w.dtype)
