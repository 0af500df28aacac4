"""SF-MAP (source-free): learn a MAP mask without the source data.

The source data are replaced by a *pseudo-source* synthesised from the model itself
(:mod:`mapguard.synthesis`). Keep terms on it: ``KL(original || masked)`` plus ``bn_weight *`` the
BatchNorm-statistics distance; degrade term on the real target data; the held-out stopping rule
(:mod:`mapguard.methods.free._stopping`) picks the epoch. Registered as protection method
``"sf-map"``. Formulas: ``docs/METHOD.md, section 2``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mapguard._errors import ConfigError, DataError
from mapguard.masking import Mask, MaskConfig, TensorSource, apply_mask
from mapguard.methods._registry import MethodInputs, MethodOutput, register_method
from mapguard.methods.free._boundary import RestyledKeep, RestyledSource
from mapguard.methods.free._config import (
    SF_DEFAULTS,
    SF_FREE_DEFAULTS,
    FreeConfig,
    FreeResult,
    split_options,
)
from mapguard.methods.free._estimate import paired_drop
from mapguard.methods.free._learn import FreeRun, method_output, predict_labels, start
from mapguard.methods.free._stopping import DegradeProbe
from mapguard.synthesis import restyle
from mapguard.training import DEFAULT_SIDE, input_side

__all__ = ["protect_sf_map", "source_free_mask"]


def _as_target(target: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if hasattr(target, "floats") and hasattr(target, "labels"):
        return target.floats(), target.labels
    if isinstance(target, torch.Tensor):
        return target, None
    if isinstance(target, tuple) and len(target) == 2:
        return target[0], target[1]
    raise ConfigError(
        "target must be an ImageSet, an image tensor or (images, labels), "
        f"got {type(target).__name__}"
    )


def source_free_mask(
    model: nn.Module,
    *,
    target: Any,
    use_target_labels: bool = True,
    mask_config: MaskConfig | None = None,
    config: FreeConfig | None = None,
    cache: Any = True,
    callbacks: Sequence[Any] = (),
    device: str | torch.device | None = None,
    progress: bool = True,
    size: int = DEFAULT_SIDE,
) -> FreeResult:
    """SF-MAP: preserve a synthesised pseudo-source, degrade on real target data.

    Args:
        model: the trained original (not modified).
        target: an :class:`~mapguard.data.ImageSet`, a float image tensor (unlabelled), or a
            sequence of those (several unauthorized targets, drawn in parallel).
        use_target_labels: use the target's labels when it has them; else (or when ``False``)
            the original model's predictions are the degrade labels.
        mask_config: mask learner options (default :data:`SF_DEFAULTS` / :data:`DF_DEFAULTS`;
            ``bn_weight`` is set to 0.1 when left at 0).
        config: SF/DF options.
        cache: synthesis cache (see :func:`~mapguard.synthesis.synthesize`).
        callbacks: further per-epoch callbacks (they run before the stopping rule).
        device: torch device (default CUDA when present).
        progress: show progress bars.
        size: the model's image side (its checkpoint's ``input_size``): the pseudo-source is
            synthesised at it, and target images must have it.

    Raises:
        ConfigError: no target, bad options. DataError: target images of another side.
    """
    targets = (
        list(target) if isinstance(target, (list, tuple)) and not _is_pair(target) else [target]
    )
    if not targets or any(t is None for t in targets):
        raise ConfigError("SF-MAP needs target data (use DF-MAP when there is none)")
    pairs = [_as_target(t) for t in targets]
    for tx, _ in pairs:
        _check_side(tx, size)
    run = start(
        model, config=config, mask_config=mask_config, defaults=SF_DEFAULTS,
        free_defaults=SF_FREE_DEFAULTS, cache=cache, device=device, progress=progress, size=size,
    )  # fmt: skip
    cfg, seed = run.cfg, run.mcfg.seed
    degrade, probes = [], []
    labelled = use_target_labels and all(ty is not None for _, ty in pairs)
    for i, (tx, ty) in enumerate(pairs):
        ty = ty if use_target_labels and ty is not None else predict_labels(run.net, tx, run.device)
        fit, probe = _hold_out(len(tx), cfg.probe_size // len(targets), seed=seed + 1 + i)
        probes.append((tx[probe], ty[probe]))
        degrade.append(TensorSource(tx[fit], ty[fit], seed=seed + 1 + i, name=f"target{i}"))
    steps = cfg.steps_per_epoch or max(1, len(degrade[0]) // run.mcfg.batch_size)
    keep = run.keep_source(steps)
    styled, seconds = _restyled(run, degrade, progress)
    terms = [] if styled is None else [_restyled_term(run, styled, steps)]
    px, py = torch.cat([p[0] for p in probes]), torch.cat([p[1] for p in probes])
    probe = DegradeProbe(run.net, px, py)
    stop = run.stopping_rule(probe)
    transfer = probe(None) if labelled else None  # the original's accuracy on the target
    result = run.learn(keep, degrade, stop, callbacks, progress, transfer=transfer, terms=terms)
    check, more = _restyled_check(run, px, py, result.mask, progress)
    n = 0 if styled is None else len(styled)
    return dataclasses.replace(
        result, restyled=n, restyle_seconds=seconds + more, restyled_drop=check
    )


def _restyled_check(
    run: FreeRun, px: torch.Tensor, py: torch.Tensor, mask: Mask, progress: bool
) -> tuple[dict[str, Any] | None, float]:
    """The chosen mask's accuracy loss on ``restyle // 2`` held-out target probe images restyled
    like the keep images (never trained on): the original's accuracy on them minus the masked
    model's, with their labels (a direct, uncalibrated estimate of the source drop), and its
    paired interval (:func:`~mapguard.methods.free._estimate.paired_drop`). A probe restyled
    without the cross-entropy term was measured and dropped (docs/METHOD-free.md, section 14)."""
    k = min(len(px), run.cfg.restyle // 2)
    if k == 0:
        return None, 0.0
    pick = torch.randperm(len(px), generator=torch.Generator().manual_seed(run.mcfg.seed + 7907))
    x, y = px[pick[:k]], py[pick[:k]]
    styled, seconds = _restyle(run, x, y, seed=run.cfg.synthesis_seed + 1, progress=progress)
    before = predict_labels(run.net, styled, run.device) == y
    after = predict_labels(apply_mask(run.net, mask), styled, run.device) == y
    return paired_drop(before, after), seconds


def _restyled(
    run: FreeRun, degrade: list[TensorSource], progress: bool
) -> tuple[torch.Tensor | None, float]:
    """``cfg.restyle`` target training images (a seeded draw over the targets' degrade images,
    never the probe's) moved towards the model's BatchNorm statistics, as float images."""
    cfg = run.cfg
    if not cfg.restyle:
        return None, 0.0
    x = torch.cat([d.x for d in degrade])
    y = torch.cat([d.y for d in degrade])
    gen = torch.Generator().manual_seed(run.mcfg.seed + 7919)
    pick = torch.randperm(len(x), generator=gen)[: cfg.restyle]
    return _restyle(run, x[pick], y[pick], seed=cfg.synthesis_seed, progress=progress)


def _restyle(
    run: FreeRun, x: torch.Tensor, y: torch.Tensor, *, seed: int, progress: bool
) -> tuple[torch.Tensor, float]:
    """:func:`~mapguard.synthesis.restyle` with the run's synthesis options, as float images."""
    images, seconds = restyle(
        run.net, x, y, config=run.cfg.synthesis, steps=run.cfg.restyle_steps, seed=seed,
        device=run.device, progress=progress,
    )  # fmt: skip
    return images.float() / 255.0, seconds


def _restyled_term(run: FreeRun, styled: torch.Tensor, steps: int) -> RestyledKeep:
    """The restyled images' own KL term: ``boundary_fraction`` of a batch's rows, weighted as
    the boundary pool's term is (``keep_weight * f / (1 - f)``)."""
    f, mcfg = run.cfg.boundary_fraction, run.mcfg
    source = RestyledSource(
        run.net, styled, rows=max(1, round(f * mcfg.batch_size)), seed=mcfg.seed + 2,
        steps_per_epoch=steps, pool_size=len(styled), augment=run.cfg.keep_augment,
    )  # fmt: skip
    source.add(styled)
    weight = mcfg.keep_weight * f / max(1e-6, 1 - f)
    return RestyledKeep(source, weight=weight, temperature=mcfg.temperature)


def _check_side(x: torch.Tensor, size: int) -> None:
    if x.ndim != 4 or tuple(x.shape[-2:]) != (size, size):
        raise DataError(
            f"target images have shape {list(x.shape[1:])}; the model takes [3, {size}, {size}]"
        )


def _hold_out(n: int, k: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fit, probe)`` indices: ``min(k, n // 10)`` random images held out (at least 1)."""
    if n < 2:
        raise ConfigError(f"target data need at least 2 images, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(1, min(k, n // 10))
    return order[k:].sort().values, order[:k].sort().values


def _is_pair(target: Any) -> bool:
    return (
        isinstance(target, tuple)
        and len(target) == 2
        and isinstance(target[0], torch.Tensor)
        and (target[1] is None or isinstance(target[1], torch.Tensor))
    )


def _sf_configs(options: Mapping[str, Any], seed: int) -> tuple[MaskConfig, FreeConfig]:
    rest = {k: v for k, v in options.items() if k != "use_target_labels"}
    return split_options(rest, seed=seed, defaults=SF_DEFAULTS, free_defaults=SF_FREE_DEFAULTS)


@register_method(
    "sf-map",
    description="SF-MAP: MAP without source data (synthesised pseudo-source; targets given)",
    validate=_sf_configs,
    needs_source=False,
)
def protect_sf_map(inputs: MethodInputs) -> MethodOutput:
    """Never reads the source data: preserves a pseudo-source synthesised from the model."""
    mcfg, fcfg = _sf_configs(inputs.options, inputs.seed)
    result = source_free_mask(
        inputs.model,
        target=list(inputs.targets),
        use_target_labels=bool(inputs.options.get("use_target_labels", True)),
        mask_config=mcfg,
        config=fcfg,
        device=inputs.device,
        progress=inputs.progress,
        size=input_side(inputs.meta),
    )
    return method_output(result, inputs.model, mcfg, fcfg)
