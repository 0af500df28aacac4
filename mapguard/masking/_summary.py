"""Which layers a mask covers and how much of each it prunes (for reports and ``--json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from mapguard.masking._mask import Mask, layer_weight

__all__ = ["LayerSummary", "mask_summary"]


@dataclass(frozen=True, kw_only=True)
class LayerSummary:
    """One masked weight.

    Attributes:
        name: The parameter's name in the model (``"1.heads.head.weight"``).
        kind: The class of the module holding it (``"Conv2d"``, ``"MultiheadAttention"``, ...).
        shape: The weight's shape.
        num_weights: Number of weights the mask covers in this layer.
        pruned_weights: How many of them the mask sets to zero (mask bit 0).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    num_weights: int
    pruned_weights: int

    @property
    def pruned_fraction(self) -> float:
        """Fraction of this layer's weights the mask sets to zero."""
        return self.pruned_weights / self.num_weights if self.num_weights else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (``pruned_fraction`` included)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "num_weights": self.num_weights,
            "pruned_weights": self.pruned_weights,
            "pruned_fraction": self.pruned_fraction,
        }


def mask_summary(model: nn.Module, mask: Mask) -> tuple[LayerSummary, ...]:
    """Per masked layer of ``model``: its name, module class, size and pruned fraction.

    Raises:
        ModelFileError: a mask layer names no parameter of ``model`` or has another shape.
    """
    params = dict(model.named_parameters())
    out = []
    for layer in mask.layers:
        weight = layer_weight(params, layer)
        module_name = layer.name.rpartition(".")[0]
        num = weight.numel()
        out.append(
            LayerSummary(
                name=layer.name,
                kind=type(model.get_submodule(module_name)).__name__,
                shape=layer.weight_shape,
                num_weights=num,
                pruned_weights=num - layer.kept_weights,
            )
        )
    return tuple(out)
