"""Trigger families: turn a 32-byte secret into a deterministic image transformation.

Every family derives its trigger from ``HKDF-SHA256(secret, salt=None,
info=b"mapguard/trigger/<family>/v1")`` with a documented byte layout (``docs/TRIGGERS.md``), so
an independent arbiter can re-implement it byte for byte. Every built-in family (``patch``,
``blend``, ``targeted_patch``) is imported here, so importing this module is all it takes for
:func:`get_trigger_family` to know them.

Example:
    >>> import numpy as np, torch
    >>> from verification.triggers import get_trigger_family, random_secret
    >>> secret = random_secret(np.random.default_rng(0))
    >>> trigger = get_trigger_family("patch").derive(secret, params={"min_size": 5, "max_size": 5})
    >>> trigger.details["size"]
    5
    >>> x = torch.rand(2, 3, 32, 32)
    >>> int((trigger.apply(x) != x).any(dim=(0, 1)).sum()) <= 25
    True
"""

from __future__ import annotations

import math

import torch

from verification._errors import TriggerError
from verification._triggers.base import (
    Trigger,
    TriggerFamily,
    get_trigger_family,
    list_trigger_families,
    public_params,
    register_trigger_family,
)
from verification._triggers.blend import BlendFamily, BlendParams
from verification._triggers.keys import null_secrets, random_secret
from verification._triggers.patch import PatchFamily, PatchParams
from verification._triggers.targeted_patch import TargetedPatchFamily, TargetedPatchParams
from verification._triggers.validation import SECRET_BYTES

__all__ = [
    "public_params",
    "SECRET_BYTES",
    "BlendFamily",
    "BlendParams",
    "PatchFamily",
    "PatchParams",
    "TargetedPatchFamily",
    "TargetedPatchParams",
    "Trigger",
    "TriggerFamily",
    "get_trigger_family",
    "list_trigger_families",
    "null_secrets",
    "psnr",
    "random_secret",
    "register_trigger_family",
]


def psnr(clean: torch.Tensor, triggered: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of ``triggered`` against ``clean``, peak value 1.

    ``10 * log10(1 / MSE)`` with the MSE over all elements of the batch; ``inf`` when identical.
    """
    if not isinstance(clean, torch.Tensor) or not isinstance(triggered, torch.Tensor):
        raise TriggerError("psnr needs two tensors")
    if clean.shape != triggered.shape:
        raise TriggerError(
            f"psnr needs equal shapes, got {list(clean.shape)} and {list(triggered.shape)}"
        )
    mse = float(torch.mean((clean.double() - triggered.double()) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)
