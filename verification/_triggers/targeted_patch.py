"""The ``targeted_patch`` trigger family: each key also names a target class.

The ``targeted_patch`` family is the ``patch`` family (same byte layout, its own HKDF info
``b"mapguard/trigger/targeted_patch/v1"``) with two more parameters and one more derived value:

- ``margin``: the patch keeps this many pixels from every border: the row is
  ``uniform_int(stream[8:16], margin, H - side - margin)``, the column likewise from
  ``stream[16:24]`` (``margin = 0`` is the ``patch`` layout);
- ``num_classes`` and the key's **target class**
  ``uniform_int(stream[L:L+8], 0, num_classes - 1)``, where ``L = 24 + ceil(3 * max_size**2 / 8)``
  is the length of the ``patch`` layout; or, with the parameter ``target >= 0``, that class for
  every key (a public choice made before any key is drawn).

Its statistic (computed in :mod:`verification._verify.queries`) counts flips *into the key's
own target class*: in labels mode, the fraction of images that are right clean, not of the target
class, and labelled the target class under the trigger; in probability mode, the mean over images
right clean and not of the target class of ``p_trigger(target) - p_clean(target)``. A watermark
embedded to send the secret trigger to the secret's target class scores high on it, while a random
key of the family scores high only if the suspect happens to send *that* key's patch to *that*
key's class. The test stays exact: the target is part of the derived trigger, so the secret and
the null keys are still exchangeable under H0 (see docs/METHOD.md, section 3).

Example:
    >>> import numpy as np
    >>> from verification.triggers import get_trigger_family, random_secret
    >>> t = get_trigger_family("targeted_patch").derive(random_secret(np.random.default_rng(0)))
    >>> sorted(t.details), 0 <= t.details["target"] < 10
    (['col', 'row', 'size', 'target'], True)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from verification._errors import TriggerError
from verification._triggers.base import register_trigger_family
from verification._triggers.hkdf import colour_bits, uniform_int
from verification._triggers.patch import PatchFamily, PatchParams

__all__ = ["TargetedPatchFamily", "TargetedPatchParams"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TargetedPatchParams(PatchParams):
    """Parameters of ``targeted_patch``: those of ``patch`` plus a border margin and the classes.

    Attributes:
        margin: Smallest distance of the patch from every border (pixels).
        num_classes: Number of classes the target is drawn from (>= 2).
        target: ``-1``: each key derives its target class; ``0 <= target < num_classes``: every
            key targets this class.
    """

    margin: int = 0
    num_classes: int = 10
    target: int = -1

    def __post_init__(self) -> None:
        super().__post_init__()
        c, margin = self.num_classes, self.margin
        if not isinstance(c, int) or isinstance(c, bool) or c < 2:
            raise TriggerError(f"trigger parameter num_classes must be an integer >= 2, got {c!r}")
        t = self.target
        if not isinstance(t, int) or isinstance(t, bool) or not -1 <= t < c:
            raise TriggerError(f"trigger parameter target must be -1 or in [0, {c}), got {t!r}")
        room = self.image_size - self.max_size
        if not isinstance(margin, int) or isinstance(margin, bool) or not 0 <= 2 * margin <= room:
            raise TriggerError(
                f"trigger parameter margin must be an integer in [0, {room // 2}] for "
                f"{self.image_size}-pixel images and max_size {self.max_size}, got {margin!r}"
            )


@register_trigger_family
class TargetedPatchFamily(PatchFamily):
    """Key-seeded patch (as ``patch``) plus a key-derived target class ``details["target"]``."""

    name = "targeted_patch"
    params_type = TargetedPatchParams

    def stream_length(self, params: TargetedPatchParams) -> int:
        return super().stream_length(params) + 8

    def layout(
        self, stream: bytes, params: TargetedPatchParams
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        n, margin = params.image_size, params.margin
        side = uniform_int(stream[0:8], params.min_size, params.max_size)
        row = uniform_int(stream[8:16], margin, n - side - margin)
        col = uniform_int(stream[16:24], margin, n - side - margin)
        bits = colour_bits(stream, 24, side * side).reshape(side, side, 3)
        alpha_map = np.zeros((1, n, n), dtype=np.float32)
        pattern = np.zeros((3, n, n), dtype=np.float32)
        alpha_map[0, row : row + side, col : col + side] = params.alpha
        pattern[:, row : row + side, col : col + side] = bits.transpose(2, 0, 1)
        offset = 24 + math.ceil(3 * params.max_size**2 / 8)
        target = uniform_int(stream[offset : offset + 8], 0, params.num_classes - 1)
        if params.target >= 0:
            target = params.target
        return alpha_map, pattern, {"size": side, "row": row, "col": col, "target": target}
