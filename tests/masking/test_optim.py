"""LayerAdam: the step of each score is proportional to its gradient within a tensor."""

from __future__ import annotations

import math

import pytest
import torch

from mapguard._errors import ConfigError
from mapguard.masking import MaskConfig
from mapguard.masking._optim import LayerAdam, make_optimizer


def test_first_step_is_gradient_over_the_tensor_rms():
    p = torch.nn.Parameter(torch.zeros(4))
    q = torch.nn.Parameter(torch.zeros(2))
    opt = LayerAdam([p, q], lr=0.1)
    p.grad = torch.tensor([3.0, -1.0, 0.0, 1.0])
    q.grad = torch.tensor([1e-4, 1e-4])  # a tiny-gradient layer still takes full-size steps
    opt.step()
    rms = math.sqrt((9 + 1 + 0 + 1) / 4)
    assert torch.allclose(p.detach(), -0.1 * p.grad / rms)
    assert torch.allclose(q.detach(), torch.tensor([-0.1, -0.1]))


def test_plain_adam_moves_every_element_by_lr_instead():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = make_optimizer("adam", [p], 0.1)
    p.grad = torch.tensor([3.0, 0.01])
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([-0.1, -0.1]), atol=1e-6)


def test_unknown_optimizer_is_refused():
    with pytest.raises(ConfigError, match="unknown optimizer 'sgd'"):
        MaskConfig(optimizer="sgd")
