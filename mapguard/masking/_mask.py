"""The binary mask as a value, its bit-packed file format, and baking it into a plain model.

File format (``format_version`` 1, little-endian)::

    8 bytes   magic  b"MGMASK" 0x00 0x01
    4 bytes   uint32 length H of the compressed header
    H bytes   zlib( canonical JSON header )
    rest      payload: numpy.packbits(all mask bits, bitorder="little"), zlib-compressed
              when header["encoding"] == "zlib" (chosen only when smaller)

The header is ``{"format": "mapguard-mask", "format_version": 1, "granularity": ...,
"weights_sha256": ..., "layers": [[name, weight_shape], ...], "bits": total, "encoding": ...}``.
Bits are the layers' masks in header order, each flattened in C order at score granularity
(one bit per weight, or one per output channel). ``weights_sha256`` is the digest of the original
model's state dict as recorded in its checkpoint (:func:`mapguard.checkpoint.weights_digest`).
Size: at most 1 bit per mask entry plus < 8 bits of padding plus the header.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mapguard._errors import ModelFileError
from mapguard.checkpoint import weights_digest
from mapguard.masking._parametrize import score_shape
from protocols.fileio import atomic_write_bytes

__all__ = ["MAGIC", "Mask", "MaskLayer", "apply_mask", "load_mask", "save_mask"]

MAGIC = b"MGMASK\x00\x01"
FORMAT_NAME = "mapguard-mask"
FORMAT_VERSION = 1


@dataclass(frozen=True, kw_only=True, eq=False)
class MaskLayer:
    """The mask of one weight: ``bits`` (bool, score shape) over a weight of ``weight_shape``."""

    name: str
    weight_shape: tuple[int, ...]
    bits: torch.Tensor = field(repr=False)

    @property
    def kept_weights(self) -> int:
        fan = int(np.prod(self.weight_shape)) // max(1, self.bits.numel())
        return int(self.bits.sum()) * fan


@dataclass(frozen=True, kw_only=True, eq=False)
class Mask:
    """A learned binary mask over named weights (:func:`maskable_weights`) of one original model."""

    granularity: str
    layers: tuple[MaskLayer, ...]
    weights_sha256: str

    @property
    def num_weights(self) -> int:
        """Number of weights covered by the mask."""
        return int(sum(np.prod(layer.weight_shape) for layer in self.layers))

    @property
    def num_bits(self) -> int:
        return int(sum(layer.bits.numel() for layer in self.layers))

    @property
    def pruned_fraction(self) -> float:
        """Fraction of covered weights that the mask sets to zero."""
        return 1.0 - sum(layer.kept_weights for layer in self.layers) / self.num_weights

    def equals(self, other: Mask) -> bool:
        """Same layers, shapes, bits, granularity and original-weights digest."""
        return self.to_bytes() == other.to_bytes()

    def agreement(self, other: Mask) -> float:
        """Fraction of mask bits equal in ``self`` and ``other`` (same layout required)."""
        a = torch.cat([layer.bits.flatten() for layer in self.layers])
        b = torch.cat([layer.bits.flatten() for layer in other.layers])
        if a.shape != b.shape:
            raise ModelFileError("masks have different layouts")
        return float((a == b).float().mean())

    @functools.cached_property
    def _encoded(self) -> bytes:
        return _encode(self)

    def to_bytes(self) -> bytes:
        """The bit-packed file bytes (deterministic)."""
        return self._encoded

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "mask") -> Mask:
        """Parse the bit-packed format; :class:`ModelFileError` on anything malformed."""
        try:
            return _decode(data)
        except ModelFileError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, struct.error, zlib.error) as exc:
            raise ModelFileError(f"'{name}': corrupt mask file ({exc})") from None


def _encode(mask: Mask) -> bytes:
    bits = torch.cat([layer.bits.flatten() for layer in mask.layers]).numpy().astype(np.uint8)
    raw = np.packbits(bits, bitorder="little").tobytes()
    packed = zlib.compress(raw, 9)
    encoding, payload = ("zlib", packed) if len(packed) < len(raw) else ("raw", raw)
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "granularity": mask.granularity,
        "weights_sha256": mask.weights_sha256,
        "layers": [[layer.name, list(layer.weight_shape)] for layer in mask.layers],
        "bits": int(bits.size),
        "encoding": encoding,
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head = zlib.compress(text, 9)
    return MAGIC + struct.pack("<I", len(head)) + head + payload


def _decode(data: bytes) -> Mask:
    if data[:8] != MAGIC:
        raise ModelFileError("not a mapguard mask file (bad magic bytes)")
    (hlen,) = struct.unpack("<I", data[8:12])
    header = json.loads(zlib.decompress(data[12 : 12 + hlen]))
    if header.get("format") != FORMAT_NAME or header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"unsupported mask format {header.get('format_version')!r}")
    payload = data[12 + hlen :]
    if header["encoding"] == "zlib":
        payload = zlib.decompress(payload)
    elif header["encoding"] != "raw":
        raise ModelFileError(f"unknown mask encoding {header['encoding']!r}")
    n = int(header["bits"])
    if len(payload) != (n + 7) // 8:
        raise ModelFileError(f"mask payload holds {len(payload) * 8} bits, header says {n}")
    bits = np.unpackbits(np.frombuffer(payload, np.uint8), count=n, bitorder="little")
    flat = torch.from_numpy(bits.astype(bool))
    layers, pos = [], 0
    for name, shape in header["layers"]:
        sshape = score_shape(shape, header["granularity"])
        size = int(np.prod(sshape))
        layers.append(
            MaskLayer(
                name=name, weight_shape=tuple(shape), bits=flat[pos : pos + size].reshape(sshape)
            )
        )
        pos += size
    if pos != n:
        raise ModelFileError(f"mask layers cover {pos} bits, header says {n}")
    return Mask(
        granularity=header["granularity"],
        layers=tuple(layers),
        weights_sha256=header["weights_sha256"],
    )


def save_mask(mask: Mask, path: str | os.PathLike[str], *, force: bool = False) -> str:
    """Write the bit-packed mask atomically; returns the file's sha256."""
    atomic_write_bytes(path, mask.to_bytes(), force=force)
    return mask.sha256


def load_mask(path: str | os.PathLike[str]) -> Mask:
    """Read a bit-packed mask file."""
    try:
        data = open(path, "rb").read()  # noqa: SIM115 - small file, read at once
    except OSError as exc:
        raise ModelFileError(f"cannot read mask '{path}': {exc.strerror}") from None
    return Mask.from_bytes(data, name=str(path))


def layer_weight(params: dict[str, torch.Tensor], layer: MaskLayer) -> torch.Tensor:
    """The weight ``layer`` masks, from a model's ``named_parameters()``.

    Raises:
        ModelFileError: no such parameter, or one of another shape.
    """
    weight = params.get(layer.name)
    if weight is None or tuple(weight.shape) != layer.weight_shape:
        shape = layer.weight_shape
        raise ModelFileError(f"mask layer '{layer.name}' {shape} does not fit the model")
    return weight


@torch.no_grad()
def apply_mask(
    model: nn.Module,
    mask: Mask,
    *,
    buffers: dict[str, torch.Tensor] | None = None,
    check_digest: bool = True,
) -> nn.Module:
    """A copy of ``model`` with every masked weight multiplied by its mask (same architecture).

    Args:
        model: the original model the mask was learned on (left untouched).
        mask: the binary mask.
        buffers: optional replacement buffers (BatchNorm statistics learned with ``update_bn``).
        check_digest: refuse a model whose weights differ from the mask's original.

    Raises:
        ModelFileError: the mask does not belong to / fit this model.
    """
    if check_digest and weights_digest(model.state_dict()) != mask.weights_sha256:
        raise ModelFileError("the mask was learned for a different model (weights sha256 differs)")
    out = copy.deepcopy(model).eval()
    params = dict(out.named_parameters())
    for layer in mask.layers:
        weight = layer_weight(params, layer)
        weight.mul_(layer.bits.to(weight.device, weight.dtype))
    if buffers:
        own = dict(out.named_buffers())
        for name, value in buffers.items():
            own[name].copy_(value)
    return out
