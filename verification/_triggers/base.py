"""Trigger value type, the trigger-family base class and the family registry."""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from verification._errors import TriggerError
from verification._triggers.hkdf import HKDF_MAX_LENGTH, hkdf_sha256
from verification._triggers.validation import check_secret

__all__ = [
    "Trigger",
    "TriggerFamily",
    "get_trigger_family",
    "list_trigger_families",
    "public_params",
    "register_trigger_family",
]

_REGISTRY: dict[str, TriggerFamily] = {}


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Trigger:
    """A derived trigger: ``apply(x) = (1 - A) * x + A * P`` pixel-wise.

    Attributes:
        family: Name of the family that derived it.
        params: The family parameters (public configuration).
        details: Public derived parameters (e.g. patch size and position); never the secret.
        alpha_map: Blend weights ``A``, float32 ``[1, H, W]`` in ``[0, 1]``.
        pattern: Pattern ``P``, float32 ``[3, H, W]`` in ``[0, 1]``.
    """

    family: str
    params: Mapping[str, Any]
    details: Mapping[str, Any]
    alpha_map: torch.Tensor
    pattern: torch.Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))
        object.__setattr__(self, "alpha_map", self.alpha_map.detach().to(torch.float32).clone())
        object.__setattr__(self, "pattern", self.pattern.detach().to(torch.float32).clone())

    @property
    def image_size(self) -> int:
        """Side length of the square images the trigger applies to."""
        return int(self.alpha_map.shape[-1])

    @property
    def support(self) -> torch.Tensor:
        """Boolean ``[H, W]`` map of the pixels the trigger can change."""
        return self.alpha_map[0] > 0

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Stamp the trigger on a batch; pure and deterministic.

        Args:
            x: Float tensor ``[N, 3, H, W]`` with values in ``[0, 1]``.

        Returns:
            A new tensor of the same shape, dtype and device; pixels outside the support are
            bit-identical to ``x`` and pixels with weight 1 equal the pattern exactly.
        """
        size = self.image_size
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TriggerError(f"trigger input must be a float tensor, got {_kind(x)}")
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, size, size):
            raise TriggerError(
                f"trigger input must have shape [N, 3, {size}, {size}], got {list(x.shape)}"
            )
        weight = self.alpha_map.to(device=x.device, dtype=x.dtype).expand_as(x)
        return torch.lerp(x, self.pattern.to(device=x.device, dtype=x.dtype).expand_as(x), weight)

    def fingerprint(self) -> str:
        """SHA-256 over the float32 bytes of ``alpha_map`` then ``pattern`` (public identifier)."""
        digest = hashlib.sha256()
        for tensor in (self.alpha_map, self.pattern):
            digest.update(np.ascontiguousarray(tensor.numpy(), dtype="<f4").tobytes())
        return "sha256:" + digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        """JSON-safe public description (family, params, derived details, fingerprint)."""
        return {
            "family": self.family,
            "params": dict(self.params),
            "details": dict(self.details),
            "fingerprint": self.fingerprint(),
        }


def _kind(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of dtype {x.dtype}"
    return type(x).__name__


class TriggerFamily(ABC):
    """A documented way to turn a 32-byte secret into a :class:`Trigger`.

    Subclasses set ``name`` and ``params_type`` (a frozen dataclass whose ``__post_init__``
    validates), and implement :meth:`stream_length` and :meth:`layout`. :meth:`derive` is the
    fixed template: ``stream = HKDF-SHA256(secret, salt=None, info=b"mapguard/trigger/<name>/v1",
    length=stream_length(params))`` and then ``layout(stream, params)``.
    """

    name: ClassVar[str]
    params_type: ClassVar[type]
    version: ClassVar[int] = 1

    @property
    def info(self) -> bytes:
        """The HKDF ``info`` string that separates this family and version from all others."""
        return f"mapguard/trigger/{self.name}/v{self.version}".encode("ascii")

    def make_params(self, params: object = None) -> Any:
        """Coerce ``None`` (defaults), a mapping or a params instance to validated params."""
        if params is None:
            return self.params_type()
        if isinstance(params, self.params_type):
            return params
        if not isinstance(params, Mapping):
            raise TriggerError(
                f"parameters of trigger family '{self.name}' must be a mapping or "
                f"{self.params_type.__name__}, got {type(params).__name__}"
            )
        known = {f.name for f in dataclasses.fields(self.params_type)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise TriggerError(
                f"unknown parameter(s) {unknown} for trigger family '{self.name}'; "
                f"valid: {sorted(known)}"
            )
        return self.params_type(**params)

    def derive(self, secret: bytes, *, params: object = None) -> Trigger:
        """Derive the trigger of ``secret`` (exactly 32 bytes) under ``params``."""
        p = self.make_params(params)
        cells = getattr(p, "grid", 0)
        lattice = dataclasses.replace(p, image_size=cells, grid=0) if cells else p
        length = self.stream_length(lattice)
        if length > HKDF_MAX_LENGTH:
            raise TriggerError(
                f"trigger family '{self.name}' with {p} needs {length} HKDF bytes, "
                f"more than the {HKDF_MAX_LENGTH} HKDF-SHA256 can give; use smaller images"
            )
        stream = hkdf_sha256(check_secret(secret), info=self.info, length=length)
        alpha_map, pattern, details = self.layout(stream, lattice)
        if cells:
            alpha_map, pattern = (_cells_to_pixels(a, p.image_size) for a in (alpha_map, pattern))
        return Trigger(
            family=self.name,
            params=public_params(p),
            details=details,
            alpha_map=torch.from_numpy(alpha_map),
            pattern=torch.from_numpy(pattern),
        )

    @abstractmethod
    def stream_length(self, params: Any) -> int:
        """Number of HKDF output bytes :meth:`layout` reads (an upper bound is fine)."""

    @abstractmethod
    def layout(self, stream: bytes, params: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Turn the byte stream into ``(alpha_map [1,H,W], pattern [3,H,W], details)``."""


def public_params(params: object) -> dict[str, Any]:
    """The parameters as committed: every field, except ``grid`` when it is 0 (geometry v1), so
    that documents written before geometry v2 existed and those written since at ``grid = 0``
    describe a trigger with the same bytes."""
    values = dataclasses.asdict(params)  # type: ignore[call-overload]
    if values.get("grid", None) == 0:
        del values["grid"]
    return values


def _cells_to_pixels(lattice: np.ndarray, size: int) -> np.ndarray:
    """Map ``[C, g, g]`` cell values onto ``[C, size, size]`` pixels: pixel ``i`` (row or
    column) takes cell ``floor(i * g / size)`` (nearest; every cell covers ``floor(size / g)`` or
    ``ceil(size / g)`` pixels)."""
    index = (np.arange(size) * lattice.shape[-1]) // size
    return np.ascontiguousarray(lattice[:, index][:, :, index])


F = TypeVar("F", bound=type[TriggerFamily])


def register_trigger_family(cls: F) -> F:
    """Class decorator: register an instance of a :class:`TriggerFamily` subclass by its name."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise TriggerError(f"trigger family name must be an identifier, got {name!r}")
    if name in _REGISTRY:
        raise TriggerError(f"trigger family '{name}' is already registered")
    _REGISTRY[name] = cls()
    return cls


def get_trigger_family(name: str) -> TriggerFamily:
    """Return the registered family ``name``; unknown names list the valid ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        valid = ", ".join(list_trigger_families())
        raise TriggerError(f"unknown trigger family {name!r}; choose one of: {valid}") from None


def list_trigger_families() -> list[str]:
    """Names of the registered trigger families, sorted."""
    return sorted(_REGISTRY)
