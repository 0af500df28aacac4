"""Device choice: CUDA when present, else CPU (never set globally)."""

from __future__ import annotations

import torch

__all__ = ["default_device"]


def default_device(requested: str | None = None) -> torch.device:
    """``requested`` if given (e.g. ``"cpu"``), else ``cuda`` when available, else ``cpu``."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
