"""The ``cosine_tilt`` key family: a key's directions, phases and frequency from its secret.

Byte layout (an independent arbiter can re-implement it from this docstring): ``stream =
HKDF-SHA256(secret, salt=None, info=b"mapguard/channel/cosine-tilt/v1", length=4 * (2 * D * C + C
+ 1))`` with ``D = 3 * #{(u, v): 1 <= u + v <= order}`` feature dimensions and ``C`` classes. The
stream is read as big-endian unsigned 32-bit integers ``w_i``; ``u_i = (w_i + 0.5) / 2**32`` is
in ``(0, 1)``. The first ``2 * D * C`` give ``D * C`` standard normals by Box-Muller
(``sqrt(-2 ln u_{2j}) * cos(2 pi u_{2j+1})``), row-major ``[D, C]``, each column scaled to unit
norm (the class's direction); the next ``C`` give the phases ``2 pi u``; the last gives the
frequency ``omega = omega_min + (omega_max - omega_min) * u``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from verification._errors import TriggerError
from verification._tilt.features import LowFreqInput
from verification._triggers.hkdf import HKDF_MAX_LENGTH, hkdf_sha256
from verification._triggers.validation import check_secret

__all__ = ["TILT_INFO", "CosineTiltFamily", "TiltKey"]

TILT_INFO = b"mapguard/channel/cosine-tilt/v1"


@dataclasses.dataclass(frozen=True)
class TiltKey:
    """One key's parameters. ``directions``: ``[D, C]`` unit columns; ``phases``: ``[C]``."""

    directions: np.ndarray
    phases: np.ndarray
    omega: float

    def rescaled(self, scale: np.ndarray) -> TiltKey:
        """The key with each feature's direction weight multiplied by ``scale`` (``[D]``): with
        ``1 / std`` of the committed natural images' features, a projection of standardised
        features (``whiten``)."""
        return dataclasses.replace(self, directions=self.directions * scale[:, None])


@dataclasses.dataclass(frozen=True, kw_only=True)
class CosineTiltFamily(LowFreqInput):
    """Public parameters of the family, fixed before any secret is drawn.

    Attributes:
        num_classes: Classes of the model (one direction and phase per class).
        grid: Images are area-averaged to ``grid x grid`` per channel (any image side).
        order: DCT coefficients ``(u, v)`` with ``1 <= u + v <= order`` are the features.
        omega_min, omega_max: Range of the key's frequency, in units of the projection's
            standard deviation on the committed natural images.
        whiten: Project standardised features (each divided by its standard deviation on the
            committed natural images), so every feature counts, not only the largest.
    """

    num_classes: int
    grid: int = 8
    order: int = 3
    omega_min: float = 0.5
    omega_max: float = 1.0
    whiten: bool = False

    def __post_init__(self) -> None:
        for name, lo in (("num_classes", 2), ("grid", 2), ("order", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise TriggerError(f"cosine_tilt {name} must be an integer >= {lo}, got {value!r}")
        if self.order > 2 * (self.grid - 1):
            raise TriggerError(f"cosine_tilt order {self.order} too high for grid {self.grid}")
        if not 0 < self.omega_min <= self.omega_max <= 100:
            raise TriggerError(
                f"cosine_tilt needs 0 < omega_min <= omega_max <= 100, got "
                f"{self.omega_min}, {self.omega_max}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"family": "cosine_tilt", "version": 1, **dataclasses.asdict(self)}

    def derive(self, secret: bytes, *, natural: np.ndarray | None = None) -> TiltKey:
        """The key of ``secret`` (see the module docstring for the byte layout); with
        ``whiten``, ``natural`` (the committed natural images' features) fixes the scale."""
        d, c = self.dim, self.num_classes
        count = 2 * d * c + c + 1
        if 4 * count > HKDF_MAX_LENGTH:
            raise TriggerError(f"cosine_tilt with D={d}, C={c} needs more HKDF bytes than allowed")
        stream = hkdf_sha256(check_secret(secret), info=TILT_INFO, length=4 * count)
        u = (np.frombuffer(stream, dtype=">u4").astype(np.float64) + 0.5) / 2.0**32
        pairs = u[: 2 * d * c].reshape(d * c, 2)
        normals = np.sqrt(-2.0 * np.log(pairs[:, 0])) * np.cos(2.0 * math.pi * pairs[:, 1])
        directions = normals.reshape(d, c)
        directions = directions / np.linalg.norm(directions, axis=0, keepdims=True)
        phases = 2.0 * math.pi * u[2 * d * c : 2 * d * c + c]
        omega = self.omega_min + (self.omega_max - self.omega_min) * float(u[-1])
        key = TiltKey(directions=directions, phases=phases, omega=omega)
        if not self.whiten:
            return key
        if natural is None:
            raise TriggerError("a whitened cosine_tilt key needs the natural images' features")
        return key.rescaled(1.0 / np.maximum(np.asarray(natural).std(axis=0), 1e-12))

    def derive_many(self, secrets: list[bytes], *, natural: np.ndarray | None = None) -> TiltKey:
        """Keys of ``secrets`` stacked: directions ``[K, D, C]``, phases ``[K, C]``, omega
        ``[K]``."""
        keys = [self.derive(s, natural=natural) for s in secrets]
        if not keys:
            raise TriggerError("derive_many needs at least one secret")
        return TiltKey(
            directions=np.stack([k.directions for k in keys]),
            phases=np.stack([k.phases for k in keys]),
            omega=np.array([k.omega for k in keys]),  # type: ignore[arg-type]
        )
