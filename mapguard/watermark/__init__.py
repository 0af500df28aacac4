"""Ownership watermark: embed secret-keyed triggers in a MAP mask and commit to them.

:func:`embed` draws ``k`` fresh 256-bit secrets, derives a trigger from each (a key-seeded patch
with a key-derived target class, :mod:`verification.triggers`), learns a mask over the frozen
model that keeps its behaviour on the source data — clean and stamped with random keys of the
same family — and sends the secret triggers to their target classes, and writes a folder with
fixed names:

==========================  =====================================================================
``protected.pt``            the protected model (mapguard checkpoint, safetensors)
``protected.pt2``           the same model as a ``torch.export`` archive
``owner.wm``                PRIVATE (0600): secrets, triggers, inline verification set, nonces,
                            calibration; signed, optionally passphrase-encrypted
``commitment.dsse.json``    PUBLIC: signed in-toto Statement committing to the above by digest
``embed-config.json``       the options used (no secret)
``metrics.json``            accuracy, visibility and self-check figures (no secret)
==========================  =====================================================================

Example:
    >>> # from protocols.keys import generate_keypair, load_private_key
    >>> # key = load_private_key(generate_keypair("owner").private_path)
    >>> # result = embed("model.pt", "builtin:mnist", key, out="wm")
    >>> # result.clean_accuracy_after, result.self_check["pvalue"]
"""

from mapguard.watermark._adapt import adapt_recipe
from mapguard.watermark._config import DEFAULT_MASK, EmbedConfig
from mapguard.watermark._embed import EmbedResult, embed
from mapguard.watermark._outputs import (
    COMMITMENT_FILE,
    CONFIG_FILE,
    EXPORT_FILE,
    FILES,
    METRICS_FILE,
    MODEL_FILE,
    WATERMARK_FILE,
)
from mapguard.watermark._tilt import (
    TiltRecipe,
    boundary_images,
    embed_tilt,
    torch_preference,
    torch_tilt,
)
from mapguard.watermark._verify import SuspectReport, verify_suspect

__all__ = [
    "COMMITMENT_FILE",
    "CONFIG_FILE",
    "DEFAULT_MASK",
    "EXPORT_FILE",
    "FILES",
    "METRICS_FILE",
    "MODEL_FILE",
    "WATERMARK_FILE",
    "EmbedConfig",
    "EmbedResult",
    "SuspectReport",
    "TiltRecipe",
    "adapt_recipe",
    "boundary_images",
    "embed",
    "embed_tilt",
    "torch_preference",
    "torch_tilt",
    "verify_suspect",
]
