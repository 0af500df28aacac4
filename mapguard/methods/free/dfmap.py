"""DF-MAP (data-free): learn a MAP mask without any data.

Keep terms on a synthesised pseudo-source as in SF-MAP; the degrade images are *neighbour
domains* of the pseudo-source, drawn fresh at every step from generic families (random
convolutions, colour, texture, amplitude spectrum, AdaIN-style first-layer feature shifts,
:mod:`mapguard.methods.free._neighbours`), labelled with the original model's prediction on the
clean image. Registered as protection method ``"df-map"``. Formulas: ``docs/METHOD.md, section 2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mapguard._errors import ConfigError
from mapguard.masking import MaskConfig
from mapguard.methods._registry import MethodInputs, MethodOutput, register_method
from mapguard.methods.free._config import (
    DF_DEFAULTS,
    DF_FREE_DEFAULTS,
    FreeConfig,
    FreeResult,
    split_options,
)
from mapguard.methods.free._learn import method_output, predict_labels, start
from mapguard.methods.free._neighbours import FeatureShiftHook, FeatureStyleShift, first_conv
from mapguard.methods.free._sources import NeighbourSource, neighbour_probe
from mapguard.methods.free._stopping import DegradeProbe
from mapguard.training import DEFAULT_SIDE, input_side

__all__ = ["data_free_mask", "protect_df_map"]


def data_free_mask(
    model: nn.Module,
    *,
    mask_config: MaskConfig | None = None,
    config: FreeConfig | None = None,
    cache: Any = True,
    callbacks: Sequence[Any] = (),
    device: str | torch.device | None = None,
    progress: bool = True,
    size: int = DEFAULT_SIDE,
) -> FreeResult:
    """DF-MAP: preserve a synthesised pseudo-source, degrade on its neighbour domains.

    See :func:`source_free_mask` for the arguments.
    """
    if config is not None and config.restyle:
        raise ConfigError("restyle restyles target images: an SF-MAP option (DF-MAP has none)")
    run = start(
        model, config=config, mask_config=mask_config, defaults=DF_DEFAULTS,
        free_defaults=DF_FREE_DEFAULTS, cache=cache, device=device, progress=progress, size=size,
    )  # fmt: skip
    cfg, net, x, train, held = run.cfg, run.net, run.x, run.train, run.held
    clean_pred = predict_labels(net, x, run.device)
    steps = cfg.steps_per_epoch or 40
    conv = first_conv(net) if FeatureStyleShift.name in cfg.families else None
    hook = FeatureShiftHook(conv) if conv is not None else None
    try:
        keep = run.keep_source(steps)
        degrade = NeighbourSource(
            x[train], clean_pred[train], families=cfg.families, steps_per_epoch=steps,
            seed=run.mcfg.seed + 1, hook=hook, hard=cfg.hard_neighbours,
            scorer=_confidence(net, run.device),
        )  # fmt: skip
        probe = None
        if degrade.image_families:  # the feature-statistics shift has no fixed pixel version
            px, py = neighbour_probe(degrade, x[held], clean_pred[held], cfg.probe_size)
            probe = DegradeProbe(net, px, py)
        stop = run.stopping_rule(probe)
        return run.learn(keep, degrade, stop, callbacks, progress)
    finally:
        if hook is not None:
            hook.close()


def _confidence(net: nn.Module, device: torch.device):  # noqa: ANN202 - a scorer
    """``scorer(x, y)``: the original model's mean probability of the labels ``y`` on ``x``
    (evaluated in eval mode, whatever mode the learner left the shared model in)."""

    @torch.no_grad()
    def score(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        was_training = net.training
        net.eval()
        try:
            p = torch.softmax(net(x.to(device)).float(), 1)
        finally:
            net.train(was_training)
        return p[torch.arange(len(y)), y.to(device)].mean().cpu()

    return score


def _df_configs(options: Mapping[str, Any], seed: int) -> tuple[MaskConfig, FreeConfig]:
    return split_options(options, seed=seed, defaults=DF_DEFAULTS, free_defaults=DF_FREE_DEFAULTS)


@register_method(
    "df-map",
    description="DF-MAP: MAP without any data (pseudo-source and its neighbour domains)",
    validate=_df_configs,
    needs_target=False,
    needs_source=False,
)
def protect_df_map(inputs: MethodInputs) -> MethodOutput:
    """Never reads source or target data (given targets are only evaluated)."""
    mcfg, fcfg = _df_configs(inputs.options, inputs.seed)
    result = data_free_mask(
        inputs.model,
        mask_config=mcfg,
        config=fcfg,
        device=inputs.device,
        progress=inputs.progress,
        size=input_side(inputs.meta),
    )
    return method_output(result, inputs.model, mcfg, fcfg)
