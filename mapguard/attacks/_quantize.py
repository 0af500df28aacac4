"""Int8 quantization attack: every Conv/Linear weight goes through an int8 round trip.

Dynamic int8 quantization (``torch.ao.quantization.quantize_dynamic``, deprecated in this torch)
stores Linear weights as per-tensor symmetric int8 and quantizes activations on the fly. A
mapguard checkpoint holds float tensors, so this attack keeps the *weights'* int8 round trip
(per-tensor symmetric for Linear layers as dynamic quantization does, per-output-channel symmetric
for convolutions as static int8 backends do) and stores the dequantized values as float32. The
activation rounding of a real int8 runtime is not reproduced; a test checks the outputs stay
close to those of a true dynamically quantized module.
"""

from __future__ import annotations

import torch
from torch import nn

from mapguard.attacks._registry import AttackContext, AttackOutput, register_attack
from mapguard.attacks._train import weight_tensors

__all__ = ["int8_round_trip", "quantize"]

QMIN, QMAX = -128, 127


def int8_round_trip(w: torch.Tensor, *, per_channel: bool) -> torch.Tensor:
    """Symmetric int8 quantize-dequantize of ``w`` (scale = max|w| / 127.5, zero point 0).

    Matches ``torch.ao`` ``MinMaxObserver(qscheme=per_tensor_symmetric, dtype=qint8)`` (or its
    per-channel twin along dim 0).
    """
    dims = tuple(range(1, w.dim())) if per_channel and w.dim() > 1 else None
    max_abs = w.abs().amax(dim=dims, keepdim=True) if dims else w.abs().max()
    scale = (max_abs / ((QMAX - QMIN) / 2)).clamp_min(torch.finfo(torch.float32).eps)
    return torch.clamp(torch.round(w / scale), QMIN, QMAX) * scale


@register_attack(
    "quantize",
    description="int8 weight quantization round trip (stored dequantized as float32)",
    needs_data=False,
)
def quantize(ctx: AttackContext) -> AttackOutput:
    """Replace every Conv/Linear weight by its int8 round trip."""
    worst = 0.0
    modules = dict(ctx.model.named_modules())
    with torch.no_grad():
        for name, w in weight_tensors(ctx.model).items():
            owner = modules[name.rsplit(".", 1)[0]] if "." in name else ctx.model
            q = int8_round_trip(w, per_channel=not isinstance(owner, nn.Linear))
            worst = max(worst, float((q - w).abs().max()))
            w.copy_(q)
    note = (
        "weights only: int8 round trip stored as float32 (Linear per-tensor, Conv per-channel "
        "symmetric); activations are not quantized"
    )
    return AttackOutput(
        model=ctx.model.eval().cpu(),
        arch=ctx.arch,
        details={"max_abs_weight_change": worst, "bits": 8},
        notes=(note,),
    )
