"""The value :func:`~mapguard.synthesis.synthesize` returns, and its on-disk form."""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mapguard._errors import DataError
from mapguard.synthesis._config import SynthesisConfig
from protocols.fileio import atomic_write_bytes

__all__ = ["SynthesisResult", "SynthesisStats", "load_result", "save_result"]

RESULT_FORMAT = "mapguard-synthesis"
RESULT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class SynthesisStats:
    """How the synthesis went, measured with the source model only (no real data needed).

    Attributes:
        has_batchnorm: whether BatchNorm statistics were matched.
        bn_loss_history: BN-statistics distance (unscaled ``sum_l d_l``) per iteration, averaged
            over batches; empty without BatchNorm.
        bn_loss: the same distance on the final, quantised images (mean over batches).
        agreement: fraction of images the source model assigns to their intended class.
        confidence: mean source-model softmax probability of the intended class.
        diversity: mean pairwise pixel RMS distance between images of the same class.
        seconds: wall time of the optimisation.
    """

    has_batchnorm: bool
    bn_loss_history: tuple[float, ...]
    bn_loss: float
    agreement: float
    confidence: float
    diversity: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bn_loss_history"] = list(self.bn_loss_history)
        return d


@dataclass(frozen=True, kw_only=True, eq=False)
class SynthesisResult:
    """Pseudo-source images recovered from a model.

    Attributes:
        images: uint8 ``[N, 3, S, S]`` (the project's pixel layout; ``S`` the model's side).
        labels: int64 ``[N]``, the class each image was optimised towards.
        num_classes: the model's class count.
        config: the options used.
        seed: the seed used.
        weights_sha256: digest of the model the images were recovered from.
        stats: fidelity proxies and the BN-loss curve.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    config: SynthesisConfig
    seed: int
    weights_sha256: str
    stats: SynthesisStats = field(repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def floats(self) -> torch.Tensor:
        """Pixels as float32 in ``[0, 1]``."""
        return self.images.to(torch.float32).div_(255.0)

    def split(self, held_out: float, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Index tensors ``(train, held_out)``, stratified by label (every class with two or more
        images gives at least one to each part).

        Raises:
            DataError: ``held_out`` outside ``(0, 1)`` or too few images to split.
        """
        if not 0.0 < held_out < 1.0:
            raise DataError(f"held-out fraction must lie in (0, 1), got {held_out!r}")
        gen = torch.Generator().manual_seed(seed)
        train, test = [], []
        for c in range(self.num_classes):
            members = torch.nonzero(self.labels == c).flatten()
            members = members[torch.randperm(len(members), generator=gen)]
            k = max(1, round(held_out * len(members))) if len(members) > 1 else 0
            test.append(members[:k])
            train.append(members[k:])
        tr, te = torch.cat(train).sort().values, torch.cat(test).sort().values
        if len(tr) == 0 or len(te) == 0:
            raise DataError(f"cannot hold out {held_out:.0%} of {len(self)} synthesized images")
        return tr, te

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description (everything but the pixels)."""
        return {
            "format": RESULT_FORMAT,
            "format_version": RESULT_VERSION,
            "n": len(self),
            "num_classes": self.num_classes,
            "seed": self.seed,
            "weights_sha256": self.weights_sha256,
            "config": self.config.to_dict(),
            "stats": self.stats.to_dict(),
        }


def save_result(
    result: SynthesisResult, path: str | os.PathLike[str], *, force: bool = False
) -> Path:
    """Write ``result`` as one ``.npz`` (pixels, labels, JSON metadata), atomically."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        images=result.images.numpy(),
        labels=result.labels.numpy(),
        metadata=np.frombuffer(json.dumps(result.metadata()).encode(), dtype=np.uint8),
    )
    atomic_write_bytes(path, buf.getvalue(), force=force)
    return Path(path)


def load_result(path: str | os.PathLike[str]) -> SynthesisResult:
    """Read a file written by :func:`save_result`.

    Raises:
        DataError: missing, corrupt or foreign file.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
            meta = json.loads(npz["metadata"].tobytes().decode())
        if meta.get("format") != RESULT_FORMAT or meta.get("format_version") != RESULT_VERSION:
            raise ValueError(f"not a {RESULT_FORMAT} v{RESULT_VERSION} file")
        stats = dict(meta["stats"])
        stats["bn_loss_history"] = tuple(stats["bn_loss_history"])
        return SynthesisResult(
            images=torch.from_numpy(images.astype(np.uint8, copy=False)),
            labels=torch.from_numpy(labels.astype(np.int64, copy=False)),
            num_classes=int(meta["num_classes"]),
            config=SynthesisConfig.from_dict(meta["config"]),
            seed=int(meta["seed"]),
            weights_sha256=str(meta["weights_sha256"]),
            stats=SynthesisStats(**stats),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read synthesized images '{path}': {exc}") from None
