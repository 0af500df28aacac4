"""``EmbedConfig.harden`` (issue 15 item 2, experimental, off): validated, recorded only when on,
set with ``harden.*`` options; :func:`harden` fine-tunes every weight towards the secrets'
targets with persistent simulated thieves that restart every ``horizon`` steps."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from mapguard._errors import ConfigError
from mapguard.masking import TensorSource
from mapguard.methods._nft_stats import recalibrate_batch_norm
from mapguard.training import accuracy
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
    # the statistics match the data: re-estimating them on other source images (an AdaBN thief,
    # or the owner recalibrating) keeps the model (with BatchNorm frozen while hardening: 10 %)
    again = copy.deepcopy(net)
    recalibrate_batch_norm(again, TensorSource(train.floats()[600:920], seed=0), batch_size=64)
    assert accuracy(again, test) > accuracy(net, test) - 0.05, (accuracy(again, test),
                                                                accuracy(net, test))  # fmt: skip
    untargeted = EmbedConfig(family="patch", n_secrets=1, min_size=8, max_size=10)
    uparams = untargeted.family_params(10)
    _, plain = draw_triggers(untargeted, uparams, np.random.default_rng(3))
    with pytest.raises(ConfigError, match="targeted"):
        harden(tiny_model, x, y, plain, get_trigger_family("patch"), uparams, cfg,
               device=torch.device("cpu"))  # fmt: skip


def test_embed_writes_the_hardened_model_and_records_it(embedded, tiny_config, mnist_small,
                                                        tmp_path) -> None:  # fmt: skip
    """Through ``embed``: the same secrets, mask recipe and data as the session's ``embedded``
    watermark, with one epoch of hardening: the written weights are the hardened ones (they
    differ from the mask-only model's), the record and the recipe say so, and the self-check
    on what was written is evidenced."""
    from mapguard.checkpoint import load_checkpoint
    from mapguard.watermark import embed

    cfg = tiny_config().with_options({"harden.epochs": 1})
    out = tmp_path / "wm"
    result = embed(embedded.original, mnist_small, embedded.owner.key(), cfg, out=out,
                   progress=False, secret_rng=np.random.default_rng(7))  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["learning"]["harden"]["steps"] == len(mnist_small[0]) // 64
    assert json.loads((out / "embed-config.json").read_text())["harden"]["epochs"] == 1
    plain = load_checkpoint(embedded.file("protected.pt"))[0].state_dict()
    hard = load_checkpoint(out / "protected.pt")[0].state_dict()
    assert any(not torch.equal(plain[k], hard[k]) for k in plain)
    assert result.self_check["evidenced"], result.self_check  # the secrets kept their targets
