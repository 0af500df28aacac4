"""The embedding's batch sources and target term."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mapguard.masking import StepView
from mapguard.watermark._config import EmbedConfig
from mapguard.watermark._sources import (
    AugmentedSource,
    NegativeKeySource,
    SecretTriggerSource,
    TargetTerm,
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
