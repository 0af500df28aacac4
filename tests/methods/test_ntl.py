"""The NTL baseline: its MMD, its loss, and that it leaves the original model alone."""

from __future__ import annotations

import pytest
import torch

from mapguard._errors import ConfigError
from mapguard.masking import TensorSource
from mapguard.methods.ntl import NTLConfig, mmd, ntl_finetune


def test_mmd_is_zero_for_identical_samples_and_grows_with_shift():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=gen)
    y = torch.randn(64, 8, generator=gen)
    assert float(mmd(x, x)) == pytest.approx(0.0, abs=1e-6)
    near, far = float(mmd(x, y)), float(mmd(x, y + 3.0))
    assert 0 <= near < far  # two draws of one distribution vs a shifted one


def test_ntl_finetunes_a_copy(tiny_model, mnist_small, mnistm_small):
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    src = TensorSource(mnist_small[0].floats(), mnist_small[0].labels, name="mnist")
    tgt = TensorSource(mnistm_small[0].floats(), mnistm_small[0].labels, name="mnistm")
    cfg = NTLConfig(epochs=1, batch_size=32, max_steps_per_epoch=3)
    result = ntl_finetune(tiny_model, source=src, target=tgt, config=cfg, progress=False)
    assert all(torch.equal(state[k], v) for k, v in tiny_model.state_dict().items())
    changed = [k for k, v in result.model.state_dict().items() if not torch.equal(state[k], v)]
    assert any(k.endswith("weight") for k in changed)
    h = result.history[0]
    assert h["mmd"] >= 0 and h["kl_src"] > 0 and result.steps == 3 and result.images == 3 * 64
    # KL_src - min(1, a*KL_tgt) * min(1, b*MMD) is bounded below by KL_src - 1
    assert h["loss"] >= h["kl_src"] - 1.0 - 1e-6


def test_ntl_refuses_unlabelled_data_and_bad_options():
    x = torch.rand(8, 3, 32, 32)
    with pytest.raises(ConfigError, match="labelled"):
        ntl_finetune(torch.nn.Linear(1, 1), source=TensorSource(x), target=TensorSource(x))
    with pytest.raises(ConfigError, match="alpha"):
        NTLConfig(alpha=0)
    with pytest.raises(ConfigError, match="unknown NTL option"):
        NTLConfig.from_dict({"keep_weight": 1})
