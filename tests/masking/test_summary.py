"""mask_summary: per-layer names, kinds, sizes and pruned fractions add up to the mask's."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mapguard._errors import ModelFileError
from mapguard.masking import LayerSummary, Mask, MaskLayer, mask_summary
from mapguard.models import create_model

from .test_mask import random_mask


def test_layers_add_up_to_the_whole_mask():
    model = create_model("vgg_tiny")
    mask = random_mask(model, p_keep=0.7, seed=3)
    summary = mask_summary(model, mask)
    assert [s.name for s in summary] == [layer.name for layer in mask.layers]
    assert [s.kind for s in summary] == ["Conv2d"] * 3 + ["Linear"] * 2
    assert sum(s.num_weights for s in summary) == mask.num_weights
    pruned = sum(s.pruned_weights for s in summary) / mask.num_weights
    assert pruned == pytest.approx(mask.pruned_fraction)
    for s, layer in zip(summary, mask.layers):
        assert s.pruned_fraction == pytest.approx(1.0 - layer.bits.float().mean().item())
        assert s.shape == layer.weight_shape


def test_channel_granularity_counts_whole_rows():
    model = create_model("vgg_tiny")
    mask = random_mask(model, p_keep=0.5, granularity="channel", seed=1)
    for s, layer in zip(mask_summary(model, mask), mask.layers):
        fan = s.num_weights // layer.bits.numel()
        assert s.pruned_weights == int((~layer.bits).sum()) * fan


def test_json_form_and_attention_kinds():
    attn = nn.MultiheadAttention(8, 2)
    params = dict(attn.named_parameters())
    layers = tuple(
        MaskLayer(name=n, weight_shape=tuple(p.shape), bits=torch.zeros(p.shape, dtype=torch.bool))
        for n, p in params.items()
        if n.endswith("weight")
    )
    mask = Mask(granularity="weight", layers=layers, weights_sha256="0" * 64)
    rows = [s.to_dict() for s in mask_summary(attn, mask)]
    assert json.loads(json.dumps(rows)) == [
        {"name": "in_proj_weight", "kind": "MultiheadAttention", "shape": [24, 8],
         "num_weights": 192, "pruned_weights": 192, "pruned_fraction": 1.0},
        {"name": "out_proj.weight", "kind": "NonDynamicallyQuantizableLinear", "shape": [8, 8],
         "num_weights": 64, "pruned_weights": 64, "pruned_fraction": 1.0},
    ]  # fmt: skip
    assert isinstance(mask_summary(attn, mask)[0], LayerSummary)


def test_a_mask_of_another_model_is_refused():
    mask = random_mask(create_model("vgg_tiny"))
    with pytest.raises(ModelFileError, match="does not fit"):
        mask_summary(nn.Sequential(nn.Linear(3, 3)), mask)
