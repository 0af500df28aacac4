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


def _attention_blocks(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]


def test_vit_masks_attention_projections_but_no_norm_bias_or_embedding(small_vit):
    names = maskable_weights(small_vit)
    for mod_name, _ in _attention_blocks(small_vit):
        assert f"{mod_name}.in_proj_weight" in names and f"{mod_name}.out_proj.weight" in names
    assert "1.conv_proj.weight" in names and "1.heads.head.weight" in names
    expected = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in small_vit.modules()) + 2
    assert len(names) == expected == 10  # patch conv, 2 x (in, out, mlp 2), head
    norms = (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm)
    for mod_name, module in small_vit.named_modules():
        if isinstance(module, norms):
            assert not any(n.startswith(f"{mod_name}.") for n in names)
    assert not any("bias" in n or "token" in n or "pos_embedding" in n for n in names)


def test_separate_qkv_projections_are_masked_each():
    attn = nn.MultiheadAttention(8, 2, kdim=4, vdim=6)
    assert maskable_weights(attn) == [
        "q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight",
    ]  # fmt: skip
    assert maskable_weights(attn, exclude=["out_proj"]) == maskable_weights(attn)[:3]


def test_resnet_masks_convs_and_fc_not_batchnorm(resnet18):
    names = maskable_weights(resnet18)
    convs = [n for n, m in resnet18.named_modules() if isinstance(m, nn.Conv2d)]
    assert names == [f"{n}.weight" for n in convs] + ["1.fc.weight"]
    assert not any(".bn" in n or "downsample.1" in n for n in names)


def _in_proj_pruned(model):
    """``model`` masked with every q/k/v input-projection weight set to zero, the rest kept."""
    params = dict(model.named_parameters())
    scores = MaskScores({n: tuple(params[n].shape) for n in maskable_weights(model)})
    with torch.no_grad():
        for name, s in zip(scores.names, scores.scores):
            if name.endswith("in_proj_weight"):
                s.zero_()
    return MaskedModel(model, scores).eval()


class _ConstantAttention(nn.Module):
    """Self-attention with zero q/k/v weights: every token attends uniformly to ``b_v``, so the
    output is ``W_o b_v + b_o`` at every position, whatever the input."""

    def __init__(self, attn: nn.MultiheadAttention) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x, *_, **__):
        b_v = self.attn.in_proj_bias[2 * self.attn.embed_dim :]
        out = nn.functional.linear(b_v, self.attn.out_proj.weight, self.attn.out_proj.bias)
        return out.expand_as(x), None


def test_masked_in_projection_is_what_attention_uses_fast_path_included(small_vit, monkeypatch):
    import copy

    vit = copy.deepcopy(small_vit)
    torch.manual_seed(1)
    for _, attn in _attention_blocks(vit):
        with torch.no_grad():
            attn.in_proj_bias.normal_()  # torch initialises it to 0: make b_v visible
    reference = copy.deepcopy(vit)
    for name, attn in _attention_blocks(reference):
        parent, _, child = name.rpartition(".")
        setattr(reference.get_submodule(parent), child, _ConstantAttention(attn))
    fused = []
    native = torch._native_multi_head_attention
    monkeypatch.setattr(
        torch, "_native_multi_head_attention", lambda *a, **k: fused.append(1) or native(*a, **k)
    )
    masked, x = _in_proj_pruned(vit), torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected, plain, fast = reference(x), vit(x), masked(x)
    assert fused, "the eval-mode fused attention path was not taken"
    slow = masked(x)  # with gradients to the scores: the Python attention path
    assert len(fused) == 2 + 2  # the unmasked and the masked no-grad passes, 2 blocks each
    assert not torch.allclose(plain, expected, atol=1e-3)  # the mask matters ...
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)  # ... and is what is used
    torch.testing.assert_close(slow.detach(), expected, atol=1e-5, rtol=1e-5)
    slow.sum().backward()
    grads = dict(zip(masked.scores.names, masked.scores.scores))
    in_proj = [g.grad for n, g in grads.items() if n.endswith("in_proj_weight")]
    assert all(g is not None and bool(g.abs().sum() > 0) for g in in_proj)
