"""The embedding's batch sources and target term."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mapguard.masking import StepView
from mapguard.watermark._config import EmbedConfig
from mapguard.watermark._sources import (
    AnticipatedTargetTerm,
    AugmentedSource,
    FeatureTargetTerm,
    NegativeKeySource,
    SecretTriggerSource,
    TargetTerm,
    class_feature_means,
    stamp,
)
from verification.triggers import get_trigger_family, random_secret

FAMILY = get_trigger_family("targeted_patch")


def _triggers(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [FAMILY.derive(random_secret(rng)) for _ in range(n)]


def test_stamp_matches_trigger_apply():
    t = _triggers(1)[0]
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(stamp(x, t.alpha_map[None], t.pattern[None]), t.apply(x))


def test_secret_source_stamps_each_secret_and_labels_its_target():
    triggers = _triggers(3)
    x, y = torch.rand(12, 3, 32, 32), torch.arange(12) % 10
    targets = [t.details["target"] for t in triggers]
    src = SecretTriggerSource(x, y, triggers, seed=0, targets=targets)
    batch = next(src.batches(epoch=0, batch_size=6))
    assert batch.x.shape == (6, 3, 32, 32)
    for img, label in zip(batch.x, batch.y):
        # the image carries exactly one secret trigger: the one whose target is its label
        hits = [i for i, t in enumerate(triggers) if torch.equal(t.apply(img[None])[0], img)]
        assert hits and all(targets[i] == int(label) for i in hits)
    placeholder = SecretTriggerSource(x, y, triggers, seed=0, placeholder=True)
    assert next(placeholder.batches(epoch=0, batch_size=6)).x.shape[0] == 1


def test_negative_keys_are_fresh_family_keys_not_the_secrets():
    secrets = _triggers(3)
    x = torch.zeros(64, 3, 32, 32)
    src = NegativeKeySource(x, FAMILY, {}, seed=1, clean_teacher=False)
    batches = list(src.batches(epoch=0, batch_size=32))
    assert len(batches) == 2 and all(b.teacher is None for b in batches)
    stamped = torch.cat([b.x for b in batches])
    changed = (stamped != 0).any(dim=1)  # where a patch landed (pattern bits on black)
    sizes = changed.flatten(1).sum(1)
    assert (sizes <= 100).all() and (sizes > 0).float().mean() > 0.9
    for t in secrets:  # no negative equals a secret trigger
        assert not any(torch.equal(img, t.apply(x[:1])[0]) for img in stamped)
    again = torch.cat([b.x for b in src.batches(epoch=0, batch_size=32)])
    assert torch.equal(stamped, again)  # seeded
    other = torch.cat([b.x for b in src.batches(epoch=1, batch_size=32)])
    assert not torch.equal(stamped, other)  # fresh keys every epoch


def test_hard_negatives_sit_at_a_secret_place():
    t = _triggers(1, seed=5)[0]
    r, c, s = t.details["row"], t.details["col"], t.details["size"]
    src = NegativeKeySource(
        torch.zeros(16, 3, 32, 32),
        FAMILY,
        {},
        seed=2,
        clean_teacher=False,
        hard=[t],
        hard_fraction=1.0,
        jitter=0,
    )
    xs = next(src.batches(epoch=0, batch_size=16)).x
    outside = xs.clone()
    outside[:, :, r : r + s, c : c + s] = 0
    assert (outside == 0).all()  # every change lies inside the secret's square


def test_target_term_is_cross_entropy_floored():
    src = SecretTriggerSource(
        torch.rand(4, 3, 32, 32),
        torch.zeros(4, dtype=torch.long),
        _triggers(1),
        seed=0,
        targets=[3],
    )
    term = TargetTerm(2.0, src, floor=0.05)
    batch = next(src.batches(epoch=0, batch_size=4))
    sure = torch.full((4, 10), -20.0)
    sure[:, 3] = 20.0
    view = StepView(
        keep_logits=sure,
        teacher_logits=sure,
        degrade_logits=sure,
        degrade_labels=torch.zeros(4, dtype=torch.long),
        pruned_fraction=torch.tensor(0.0),
        extra={"target": (sure, batch)},
    )
    assert float(term.value(view)) == pytest.approx(0.05)


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="negative_teacher"):
        EmbedConfig(negative_teacher="teacher")
    with pytest.raises(ValueError, match="n_secrets"):
        EmbedConfig(n_secrets=0)
    with pytest.raises(ValueError, match="margin"):
        EmbedConfig(family="patch", margin=2)
    with pytest.raises(ValueError, match="feature_weight needs a targeted"):
        EmbedConfig(family="patch", feature_weight=1.0)
    with pytest.raises(ValueError, match="feature_weight"):
        EmbedConfig(feature_weight=-1.0)
    with pytest.raises(ValueError, match="finetune_step needs a targeted"):
        EmbedConfig(family="patch", finetune_step=0.1)
    cfg = EmbedConfig().replace(epochs=2)
    assert cfg.mask.epochs == 2 and EmbedConfig.from_dict(cfg.to_dict()) == cfg


def test_class_feature_means_average_each_class_of_the_linear_inputs(tiny_model, mnist_small):
    x, y = mnist_small[0].floats()[:200], mnist_small[0].labels[:200]
    means = class_feature_means(tiny_model, x, y, 10)
    linears = [m for m in tiny_model.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.shape) for m in means] == [(10, lin.in_features) for lin in linears]
    with torch.no_grad():
        feats = tiny_model[1][:-1](tiny_model[0](x))  # the input of the last Linear
        right = tiny_model(x).argmax(1) == y
    c = int(y[0])
    assert torch.allclose(means[-1][c], feats[(y == c) & right].mean(0), atol=1e-5)


def test_feature_term_is_zero_at_the_target_means_and_grows_away_from_them():
    src = SecretTriggerSource(
        torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long), _triggers(2), seed=0,
        targets=[3, 7],
    )  # fmt: skip
    batch = next(src.batches(epoch=0, batch_size=4))
    means = (torch.rand(10, 6), torch.rand(10, 2))
    term = FeatureTargetTerm(1.0, means)
    logits = torch.zeros(4, 10)
    at_target = tuple(torch.cat([torch.zeros(2, m.shape[1]), m[batch.y]]) for m in means)

    def view(features):
        return StepView(
            keep_logits=logits, teacher_logits=logits, degrade_logits=logits,
            degrade_labels=batch.y, pruned_fraction=torch.tensor(0.0),
            extra={"target": (logits, batch)}, features=features, rows={"target": slice(2, 6)},
        )  # fmt: skip

    assert float(term.value(view(at_target))) == pytest.approx(0.0, abs=1e-7)
    away = tuple(f + 0.5 for f in at_target)
    assert float(term.value(view(away))) > 0.1


def test_anticipated_term_scores_the_triggers_after_a_clean_descent_step(tiny_model, mnist_small):
    from mapguard.masking import MaskedModel, MaskScores, maskable_weights

    x, y = mnist_small[0].floats()[:128], mnist_small[0].labels[:128]
    shapes = {n: tuple(tiny_model.get_parameter(n).shape) for n in maskable_weights(tiny_model)}
    masked = MaskedModel(tiny_model, MaskScores(shapes)).train()
    src = SecretTriggerSource(x, y, _triggers(1), seed=0, targets=[3])
    batch = next(src.batches(epoch=0, batch_size=16))
    logits = masked(batch.x)

    def view(model):
        return StepView(
            keep_logits=logits, teacher_logits=logits, degrade_logits=logits,
            degrade_labels=batch.y, pruned_fraction=torch.tensor(0.0),
            extra={"target": (logits, batch)}, model=model,
        )  # fmt: skip

    plain = float(TargetTerm(1.0, src).value(view(masked)).detach())
    values = [
        AnticipatedTargetTerm(1.0, x, y, step=s, seed=0, batch_size=32).value(view(masked))
        for s in (1e-6, 0.3)
    ]
    assert float(values[0].detach()) == pytest.approx(
        plain, rel=1e-3
    )  # a vanishing step: the same loss
    assert abs(float(values[1].detach()) - plain) > 1e-3  # a real step moves it
    values[1].backward()
    assert all(p.grad is not None for p in masked.scores.parameters())  # the mask learns from it
    with pytest.raises(ValueError, match="single-process"):
        AnticipatedTargetTerm(1.0, x, y, step=0.1, seed=0).value(view(None))
    with pytest.raises(ValueError, match="positive"):
        AnticipatedTargetTerm(1.0, x, y, step=0.0, seed=0)


def test_with_options_sets_fields_and_mask_fields():
    cfg = EmbedConfig().with_options({"target_weight": 2.0, "mask.weight_noise": 0.05})
    assert cfg.target_weight == 2.0 and cfg.mask.weight_noise == 0.05
    assert cfg.mask.lr == EmbedConfig().mask.lr  # the other mask options stay
    with pytest.raises(ValueError, match="unknown mask option"):
        EmbedConfig().with_options({"mask.nope": 1})


def test_augmented_source_transforms_a_share_of_images_and_keeps_labels():
    x = torch.rand(64, 3, 32, 32)
    src = SecretTriggerSource(x, torch.zeros(64, dtype=torch.long), _triggers(2), seed=0,
                              targets=[3, 7])  # fmt: skip
    plain = list(src.batches(epoch=0, batch_size=32))
    aug = AugmentedSource(src, 0.5, seed=1)
    assert aug.name == src.name and aug.steps_per_epoch(32) == src.steps_per_epoch(32)
    got = list(aug.batches(epoch=0, batch_size=32))
    again = list(aug.batches(epoch=0, batch_size=32))
    assert len(got) == len(plain) == 2
    changed = torch.cat([(g.x - p.x).abs().flatten(1).amax(1) > 1e-6 for g, p in zip(got, plain)])
    assert 16 <= int(changed.sum()) <= 48  # about half of the 64 images
    for g, p, a in zip(got, plain, again):
        assert torch.equal(g.y, p.y) and torch.equal(g.x, a.x)  # labels kept; seeded
        assert g.x.min() >= 0 and g.x.max() <= 1 and g.x.shape == p.x.shape
    off = AugmentedSource(src, 0.0, seed=1).batches(epoch=0, batch_size=32)
    assert all(torch.equal(g.x, p.x) for g, p in zip(off, plain))
    with pytest.raises(ValueError, match="augment"):
        EmbedConfig(augment=1.5)
