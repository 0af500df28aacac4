"""Images carried inside a JSON document (the watermark file's verification set and channel).

``{"format": "uint8-nchw-base64/v1", "shape": [n, 3, H, W], "images": base64 of the uint8
pixels in C order}``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from verification._errors import VerificationError

__all__ = ["INLINE_FORMAT", "images_from_inline", "inline_images"]

INLINE_FORMAT = "uint8-nchw-base64/v1"


def inline_images(x: np.ndarray) -> dict[str, Any]:
    """The inline object of uint8 images ``x``."""
    data = base64.b64encode(np.ascontiguousarray(x).tobytes()).decode("ascii")
    return {"format": INLINE_FORMAT, "shape": [int(d) for d in x.shape], "images": data}


def images_from_inline(obj: Any, what: str) -> np.ndarray:
    """The uint8 images of an inline object.

    Raises:
        VerificationError: ``malformed inline {what}: ...`` for another format, a bad shape or
            bad base64.
    """
    try:
        if obj["format"] != INLINE_FORMAT:
            raise ValueError(f"format {str(obj['format'])[:30]!r}")
        shape = tuple(int(d) for d in obj["shape"])
        raw = base64.b64decode(obj["images"], validate=True)
        return np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise VerificationError(f"malformed inline {what}: {exc}") from None
