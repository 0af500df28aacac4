"""``EmbedConfig.harden`` (issue 15 item 2, experimental, off): validated, recorded only when on,
set with ``harden.*`` options; :func:`harden` fine-tunes every weight towards the secrets'
targets with persistent simulated thieves that restart every ``horizon`` steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mapguard._errors import ConfigError
from mapguard.watermark._config import EmbedConfig
from mapguard.watermark._harden import HardenConfig, harden
from mapguard.watermark._recipe import draw_triggers
from verification.triggers import get_trigger_family


def test_harden_is_off_by_default_and_recorded_only_when_on() -> None:
    assert not EmbedConfig().harden.on and "harden" not in EmbedConfig().to_dict()
    cfg = EmbedConfig().with_options({"harden.epochs": 3, "harden.thieves": ["ftal"]})
    assert cfg.harden == HardenConfig(epochs=3, thieves=("ftal",))
    assert cfg.to_dict()["harden"]["epochs"] == 3
    assert EmbedConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"thieves": ("ftal", "ftal")}, {"thieves": ("wrk",)}, {"inner_lr_min": 0.1},
                {"epochs": -1}):  # fmt: skip
        with pytest.raises(ConfigError, match="harden"):
            HardenConfig(**bad)


@pytest.fixture(scope="module")
def drawn(mnist_small):
    cfg = EmbedConfig(n_secrets=3, min_size=8, max_size=10)
    params = cfg.family_params(10)
    _, triggers = draw_triggers(cfg, params, np.random.default_rng(3))
    return triggers, get_trigger_family(cfg.family), params


def _hit_rate(model, x, triggers) -> float:  # noqa: ANN001
    with torch.no_grad():
        hits = [(model(t.apply(x)).argmax(1) == int(t.details["target"])).float().mean()
                for t in triggers]  # fmt: skip
    return float(torch.stack(hits).mean())


def test_harden_sends_the_secrets_to_their_targets_and_its_thieves_restart(
    tiny_model, mnist_small, drawn
) -> None:
    train, test = mnist_small
    triggers, family, params = drawn
    cfg = HardenConfig(epochs=2, horizon=4, thieves=("ftal", "unlearn"))
    x, y = train.floats()[:320], train.labels[:320]
    net, record = harden(tiny_model, x, y, triggers, family, params, cfg,
                         device=torch.device("cpu"))  # fmt: skip
    assert record["steps"] == 10 and len(record["history"]) == 2
    assert record["restarts"] == 2 * 3  # each thief: steps 1, 5, 9 start afresh
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    before, after = _hit_rate(tiny_model, test.floats(), triggers), _hit_rate(net, test.floats(),
                                                                             triggers)  # fmt: skip
    assert after > before + 0.2, (before, after)
    untargeted = EmbedConfig(family="patch", n_secrets=1, min_size=8, max_size=10)
    uparams = untargeted.family_params(10)
    _, plain = draw_triggers(untargeted, uparams, np.random.default_rng(3))
    with pytest.raises(ConfigError, match="targeted"):
        harden(tiny_model, x, y, plain, get_trigger_family("patch"), uparams, cfg,
               device=torch.device("cpu"))  # fmt: skip
