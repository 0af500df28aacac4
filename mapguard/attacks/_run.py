"""``attack``: run one registered attack on a model; ``attack_file``: the same, file to file."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mapguard import __version__
from mapguard._device import check_amp, default_device, mixed_precision
from mapguard._errors import ConfigError
from mapguard.attacks._config import AttackConfig
from mapguard.attacks._registry import AttackContext, AttackKind, get_attack
from mapguard.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from mapguard.models import Normalize
from mapguard.training import DEFAULT_SIDE, check_compatible, input_side, probe_num_classes
from protocols.fileio import check_writable

if TYPE_CHECKING:
    from mapguard.data import ImageSet

__all__ = ["AttackInfo", "attack", "attack_file"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttackInfo:
    """What an attack did (recorded in the attacked checkpoint's ``extra``).

    Attributes:
        kind: The attack kind.
        config: The resolved options (kind defaults filled in).
        seed: The seed of every random choice.
        arch: Architecture of the attacked model (differs from the victim's for distill-arch).
        data: Name of the attacker's data (None for data-free attacks).
        n_images: Attacker images used.
        seconds: Wall time.
        details: Recipe-specific figures (e.g. ``zero_fraction`` after pruning).
        notes: Caveats (e.g. what a quantized checkpoint does and does not reproduce).
    """

    kind: str
    config: Mapping[str, Any]
    seed: int
    arch: str
    data: str | None
    n_images: int
    seconds: float
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["config"], out["details"], out["notes"] = (
            dict(self.config),
            dict(self.details),
            list(self.notes),
        )
        return out

    def to_extra(self) -> dict[str, str]:
        """The ``ModelMeta.extra`` entries of the attacked checkpoint (strings only)."""
        return {
            "attack": self.kind,
            "attack_config": json.dumps(dict(self.config), sort_keys=True),
            "attack_seed": str(self.seed),
            "attack_data": self.data or "",
            "attack_n_images": str(self.n_images),
            "attack_details": json.dumps(dict(self.details), sort_keys=True),
            "attack_notes": json.dumps(list(self.notes)),
            "tool": f"mapguard {__version__}",
        }


def _facts(model: nn.Module, meta: ModelMeta | None, side: int) -> tuple[str, int, tuple, tuple]:
    """Architecture, class count and normalisation of the victim (from meta, else the model,
    probed with ``side``-pixel images)."""
    if meta is not None:
        return meta.arch, meta.num_classes, tuple(meta.mean), tuple(meta.std)
    norm = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    mean = tuple(norm.mean.flatten().tolist()) if norm is not None else (0.5, 0.5, 0.5)
    std = tuple(norm.std.flatten().tolist()) if norm is not None else (0.25, 0.25, 0.25)
    return "unknown", probe_num_classes(model, size=side), mean, std


def _attacker_data(
    kind: AttackKind,
    data: ImageSet | None,
    cfg: AttackConfig,
    num_classes: int,
    seed: int,
    side: int | None,
) -> ImageSet | None:
    """The attacker's images: ``n_images`` or ``fraction`` of ``data`` (class-balanced draw);
    with ``side`` (the victim's recorded image side) the data must have it."""
    if not kind.needs_data:
        return None
    if data is None:
        what = "clean data of the model's task" if kind.data_role == "source" else "target data"
        raise ConfigError(f"attack '{kind.name}' needs --data ({what})")
    check_compatible(num_classes, data, what="the model", side=side)
    n = cfg.n_images if cfg.n_images is not None else max(1, round(cfg.fraction * len(data)))
    if n > len(data):
        raise ConfigError(f"n_images={n} exceeds the {len(data)} images of '{data.name}'")
    return data if n == len(data) else data.take(n, seed=seed)


def attack(
    model: nn.Module,
    kind: str,
    *,
    data: ImageSet | None = None,
    config: AttackConfig | None = None,
    seed: int = 0,
    meta: ModelMeta | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    amp: bool = False,
) -> tuple[nn.Module, AttackInfo]:
    """Attack a copy of ``model`` with recipe ``kind``; ``model`` itself is left unchanged.

    Args:
        model: The victim (e.g. a protected or watermarked model), pixels in ``[0, 1]`` in.
        kind: A registered kind (:func:`list_attacks`).
        data: The attacker's data (train split of the task, or target data for ``target-ft``);
            the recipe uses ``config.n_images`` or ``config.fraction`` of it.
        config: Options; unset fields take the kind's defaults.
        seed: Seed of the data draw, initialisations, shuffles and noise.
        meta: The victim's checkpoint metadata (architecture for same-architecture students;
            ``input_size``: ``data`` must have its side). Without it the class count is probed
            at the side of ``data`` (32 for data-free kinds).
        device: Torch device (default: cuda if available, else cpu).
        progress: Show progress bars.
        amp: bf16 autocast and channels-last in the attack's training loop (CUDA only).

    Returns:
        The attacked model (eval mode, CPU) and an :class:`AttackInfo`.

    Raises:
        ConfigError: unknown kind, bad options, missing data. ModelFileError: class mismatch.
        DataError: data of another image side than ``meta`` records. TrainingError: the
        attack's loss diverged.
    """
    t0 = time.perf_counter()
    spec = get_attack(kind)
    cfg = (config or AttackConfig()).resolve(spec.defaults)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    side = input_side(meta) if meta is not None else None
    probe_side = data.side if data is not None and spec.needs_data else DEFAULT_SIDE
    arch, classes, mean, std = _facts(model, meta, probe_side)
    subset = _attacker_data(spec, data, cfg, classes, seed, side)
    ctx = AttackContext(
        model=copy.deepcopy(model).to(default_device(str(device) if device else None)),
        arch=arch, num_classes=classes, mean=mean, std=std, data=subset, config=cfg,
        seed=seed, device=default_device(str(device) if device else None), progress=progress,
    )  # fmt: skip
    with mixed_precision(ctx.device, amp):
        out = spec.run(ctx)
    info = AttackInfo(
        kind=kind,
        config=cfg.to_dict(),
        seed=seed,
        arch=out.arch,
        data=subset.name if subset is not None else None,
        n_images=len(subset) if subset is not None else 0,
        seconds=time.perf_counter() - t0,
        details=dict(out.details),
        notes=tuple(out.notes),
    )
    return out.model.eval().cpu(), info


def attack_file(
    model_path: str | os.PathLike[str],
    kind: str,
    *,
    out: str | os.PathLike[str],
    data: str | ImageSet | None = None,
    config: AttackConfig | None = None,
    seed: int = 0,
    force: bool = False,
    device: str | None = None,
    progress: bool = True,
    amp: bool = False,
) -> tuple[AttackInfo, ModelMeta]:
    """Attack the mapguard checkpoint at ``model_path`` and save the result to ``out``.

    ``data`` is a spec (``builtin:NAME`` or a folder; its *train* split is used, at the model's
    image side, its checkpoint's ``input_size``) or an image set of that side.
    The output is a mapguard checkpoint whose ``extra`` records the attack, its resolved config,
    seed and details, and the victim's digest and metadata.

    Raises:
        ConfigError, DataError, ModelFileError, TrainingError, OutputExistsError.
    """
    spec = get_attack(kind)  # unknown kinds fail before any loading
    check_writable(out, force=force)
    (config or AttackConfig()).resolve(spec.defaults)
    if spec.needs_data and data is None:
        raise ConfigError(f"attack '{kind}' needs --data")
    if amp:
        check_amp(default_device(device))  # before any loading
    victim, meta = load_checkpoint(model_path)
    images = _load(data, input_side(meta), progress) if spec.needs_data else None
    attacked, info = attack(
        victim, kind, data=images, config=config, seed=seed, meta=meta, device=device,
        progress=progress, amp=amp,
    )  # fmt: skip
    extra = {
        **info.to_extra(),
        "attacked_from_sha256": meta.weights_sha256,
        "attacked_from_arch": meta.arch,
        "attacked_from_extra": json.dumps(dict(meta.extra), sort_keys=True),
    }
    new_meta = dataclasses.replace(meta, arch=info.arch, extra=extra)
    return info, save_checkpoint(attacked, new_meta, Path(out), force=force)


def _load(data: str | ImageSet | None, side: int, progress: bool) -> ImageSet | None:
    if data is None or not isinstance(data, str):
        return data
    from mapguard.data import load_data

    return load_data(data, split="train", progress=progress, size=side)
