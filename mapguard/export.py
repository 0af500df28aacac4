"""``torch.export`` archives and ONNX files of a model: one home for the export calls.

Example:
    >>> import tempfile, torch
    >>> from mapguard.models import create_model
    >>> path = export_program(create_model("vgg_tiny"), f"{tempfile.mkdtemp()}/m.pt2")
    >>> torch.export.load(str(path)).module()(torch.rand(5, 3, 32, 32)).shape
    torch.Size([5, 10])
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from mapguard._errors import ConfigError, ModelFileError
from protocols.fileio import atomic_write_bytes

__all__ = [
    "MAX_EXPORT_BATCH",
    "ONNX_INSTALL",
    "export_checkpoint_onnx",
    "export_onnx",
    "export_program",
]

#: Largest batch an exported archive accepts (its batch dimension is symbolic in ``[1, this]``).
MAX_EXPORT_BATCH = 65536
ONNX_INSTALL = "pip install 'mapguard[onnx]'"
_PROTOBUF_LIMIT = 2**31 - 1  # one ONNX file without external data (which verifiers refuse)


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


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_size: Sequence[int] = (3, 32, 32),
    force: bool = False,
) -> Path:
    """Save ``model`` (moved to the CPU, eval mode) as one self-contained ONNX file.

    ``torch.onnx.export`` (the dynamo exporter: needs ``onnx`` and ``onnxscript``, the extra
    ``mapguard[onnx]``) with the same example input and batch bounds as :func:`export_program`;
    the input is ``pixels`` ``[batch, *input_size]`` in ``[0, 1]``, the output ``logits``. The
    weights are inside the file, never external data (verifiers refuse external data), so the
    model must fit in 2 GiB. Standard ONNX domains only; written atomically.

    Raises:
        ConfigError: ``onnx`` / ``onnxscript`` are not installed.
        ModelFileError: The model cannot be exported, or is over 2 GiB.
    """
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"ONNX export needs {' and '.join(missing)} ({ONNX_INSTALL})")
    model = model.cpu().eval()
    example = (torch.zeros(2, *input_size),)
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
            program = torch.onnx.export(
                model, example, None, dynamo=True, external_data=False, verbose=False,
                dynamic_shapes=({0: batch},), input_names=["pixels"], output_names=["logits"],
            )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - any exporter failure on a user model is bad input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"cannot export the model to ONNX: {first[:300]}") from None
    proto = program.model_proto
    if proto.ByteSize() > _PROTOBUF_LIMIT:
        raise ModelFileError("the model is over 2 GiB: too large for one ONNX file")
    atomic_write_bytes(path, proto.SerializeToString(), force=force)
    return Path(path)


def export_checkpoint_onnx(
    model_path: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    force: bool = False,
    allow_code: bool = False,
) -> Path:
    """``mapguard export-onnx``: a mapguard checkpoint as an ONNX file at its ``input_size``.

    The ONNX file is what an owner ships when users run ONNX; ``mapguard verify`` reads it back
    (onnxruntime in the isolated worker) and answers as the checkpoint does.
    """
    from mapguard.checkpoint import load_checkpoint

    model, meta = load_checkpoint(model_path, allow_code=allow_code)
    return export_onnx(model, out, input_size=tuple(meta.input_size), force=force)
