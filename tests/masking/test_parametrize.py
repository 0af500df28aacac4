"""Mask parametrisation: which weights are masked, the STE, the all-ones start."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mapguard._errors import ModelFileError
from mapguard.masking import MaskedModel, MaskScores, maskable_weights
from mapguard.masking._parametrize import binarize, score_shape
from mapguard.models import create_model


def test_maskable_weights_are_every_conv_and_linear_weight():
    model = create_model("vgg_tiny")
    names = maskable_weights(model)
    expected = [
        f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    assert names == expected and len(names) == 5


def test_exclude_patterns_match_module_or_parameter_names():
    model = create_model("vgg_tiny")
    last = maskable_weights(model)[-1]
    assert last not in maskable_weights(model, exclude=[last])
    assert last not in maskable_weights(model, exclude=[last.removesuffix(".weight")])
    assert maskable_weights(model, exclude=["1.0*"]) == maskable_weights(model)[1:]


def test_model_without_conv_or_linear_is_refused():
    with pytest.raises(ModelFileError, match="no Conv/Linear"):
        maskable_weights(nn.Sequential(nn.Flatten(), nn.ReLU()))
    with pytest.raises(ModelFileError, match="after --exclude"):
        maskable_weights(create_model("vgg_tiny"), exclude=["*"])


def test_straight_through_is_hard_forward_identity_backward():
    s = torch.tensor([0.2, 0.5, 0.7, 1.0], requires_grad=True)
    m = binarize(s, 0.5)
    assert m.tolist() == [0.0, 0.0, 1.0, 1.0]
    (m * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert s.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_channel_scores_broadcast_over_fan_in():
    assert score_shape((8, 3, 3, 3), "channel") == (8, 1, 1, 1)
    assert score_shape((10, 64), "channel") == (10, 1)
    scores = MaskScores({"w": (4, 6)}, granularity="channel", init=1.0, threshold=0.5)
    with torch.no_grad():
        scores.scores[0][1] = 0.0  # prune one output channel = 6 of 24 weights
    assert float(scores.pruned_fraction().detach()) == pytest.approx(0.25)


def test_masked_model_starts_identical_to_original():
    torch.manual_seed(0)
    model = create_model("vgg_tiny").eval()
    shapes = {n: tuple(dict(model.named_parameters())[n].shape) for n in maskable_weights(model)}
    masked = MaskedModel(model, MaskScores(shapes)).train()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(masked(x), model(x))
    assert not model.training  # the frozen original stays in eval mode (BN statistics frozen)
    assert [n for n, _ in masked.named_parameters()] == [f"scores.scores.{i}" for i in range(5)]
