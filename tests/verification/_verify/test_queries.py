"""Reducing the suspect's answers to per-image contributions: the targeted statistic."""

from __future__ import annotations

import pytest
import torch

from verification._verify.queries import reduce_targeted, target_classes
from verification.triggers import get_trigger_family


def test_reduce_targeted_counts_flips_into_the_target_only():
    labels = torch.tensor([0, 1, 2, 3])
    clean_correct = torch.tensor([True, True, True, False])
    # two triggers with targets 2 and 0; answers under each
    answers = torch.tensor([[2, 2, 2, 2], [0, 0, 1, 0]])
    contrib, acc = reduce_targeted(answers, labels, clean_correct, None, torch.tensor([2, 0]))
    # trigger 0: image 0 and 1 flipped to 2 (image 2 is of class 2, image 3 wrong clean)
    assert contrib[0].tolist() == [1.0, 1.0, 0.0, 0.0]
    # trigger 1: image 1 flipped to 0; image 0 is of class 0; image 2 answered 1 (not target)
    assert contrib[1].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert acc.tolist() == [0.25, 0.25]


def test_reduce_targeted_probabilities():
    labels = torch.tensor([0, 1])
    clean = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])
    answers = torch.tensor([[[0.5, 0.1, 0.4], [0.1, 0.3, 0.6]]])
    contrib, _ = reduce_targeted(
        answers, labels, torch.tensor([True, True]), clean, torch.tensor([2])
    )
    assert contrib[0].tolist() == pytest.approx([0.35, 0.5])


def test_target_classes_refuses_mixing():
    fam_t, fam_p = get_trigger_family("targeted_patch"), get_trigger_family("patch")
    t, p = fam_t.derive(bytes(32)), fam_p.derive(bytes(32))
    assert target_classes([p, p]) is None
    assert target_classes([t]).tolist() == [t.details["target"]]
    with pytest.raises(ValueError, match="mix"):
        target_classes([t, p])
