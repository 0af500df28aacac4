"""``torch.export`` archives of a model: one home for the export call.

Example:
    >>> import tempfile, torch
    >>> from mapguard.models import create_model
    >>> path = export_program(create_model("vgg_tiny"), f"{tempfile.mkdtemp()}/m.pt2")
    >>> torch.export.load(str(path)).module()(torch.rand(5, 3, 32, 32)).shape
    torch.Size([5, 10])
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from protocols.fileio import atomic_write_bytes

__all__ = ["MAX_EXPORT_BATCH", "export_program"]

#: Largest batch an exported archive accepts (its batch dimension is symbolic in ``[1, this]``).
MAX_EXPORT_BATCH = 65536


def export_program(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_size: Sequence[int] = (3, 32, 32),
    force: bool = False,
) -> Path:
    """Save ``model`` (moved to the CPU, eval mode) as a ``torch.export`` archive (``.pt2``).

    The example input is two blank images of ``input_size`` (the checkpoint's
    ``ModelMeta.input_size``), which fixes the image shape the archive takes. The batch dimension
    is dynamic with explicit bounds, ``Dim("batch", min=1, max=MAX_EXPORT_BATCH)``: a single image
    is in range (``Dim.DYNAMIC`` would record ``[2, inf)``). The archive runs with plain PyTorch
    (``torch.export.load(path).module()(x)``), no mapguard. It is written atomically (an existing
    file needs ``force``).
    """
    model = model.cpu().eval()
    example = (torch.zeros(2, *input_size),)  # fixed, so the archive's sample inputs are too
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    program = torch.export.export(model, example, dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()  # a buffer, not the temporary file: torch warns on names not ending .pt2
    torch.export.save(program, buffer)
    atomic_write_bytes(path, buffer.getvalue(), force=force)
    return Path(path)
