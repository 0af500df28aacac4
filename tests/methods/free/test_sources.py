"""Batch sources of SF-MAP / DF-MAP: deterministic, split across ranks, mixtures."""

from __future__ import annotations

import torch

from mapguard.methods.free import NeighbourSource


def test_neighbour_source_is_deterministic_and_labels_clean_predictions(mnist_small) -> None:
    x, y = mnist_small[1].floats()[:40], mnist_small[1].labels[:40]
    src = NeighbourSource(x, y, families=("colour", "texture"), steps_per_epoch=2, seed=0)
    a = list(src.batches(epoch=0, batch_size=8))
    b = list(src.batches(epoch=0, batch_size=8))
    assert len(a) == 2 and all(
        torch.equal(p.x, q.x) and torch.equal(p.y, q.y) for p, q in zip(a, b)
    )
    halves = [list(src.batches(epoch=0, batch_size=8, rank=r, world_size=2))[0] for r in (0, 1)]
    assert torch.equal(torch.cat([h.x for h in halves]), a[0].x)


def test_mix_pairs_mixes_only_the_first_rows_inside_the_pair_hull() -> None:
    from mapguard.methods.free import mix_pairs

    x = torch.rand(8, 3, 4, 4)
    a = mix_pairs(x, 3, torch.Generator().manual_seed(1))
    b = mix_pairs(x, 3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(a[3:], x[3:]) and not torch.equal(a[:3], x[:3])
    # every mixed row is l*x_i + (1-l)*x_j with l in [0.3, 0.7]: within the pixelwise hull
    lo, hi = x.min(dim=0).values, x.max(dim=0).values
    assert bool((a[:3] >= lo - 1e-6).all() and (a[:3] <= hi + 1e-6).all())
    assert torch.equal(mix_pairs(x, 0, torch.Generator()), x)


def test_pseudo_source_with_mixup_computes_teacher_logits_per_batch(tiny_model) -> None:
    from mapguard.methods.free import PseudoSource

    x = torch.rand(16, 3, 32, 32)
    src = PseudoSource(x, steps_per_epoch=2, seed=0, mixup=0.5)
    assert src.with_teacher(tiny_model) is src  # mixed images have no precomputed logits
    batches = list(src.batches(epoch=1, batch_size=8))
    assert len(batches) == 2 and all(b.teacher is None for b in batches)
    assert not any(any(torch.equal(row, xi) for xi in x) for row in batches[0].x[:4])


def test_pseudo_source_pool_fills_its_share_and_an_empty_pool_changes_nothing() -> None:
    from mapguard.methods.free import PseudoSource

    x = torch.rand(16, 3, 8, 8)
    plain = PseudoSource(x, steps_per_epoch=2, seed=0, augment=True)
    pooled = PseudoSource(x, steps_per_epoch=2, seed=0, augment=True, pool_fraction=0.25,
                          pool_size=4)  # fmt: skip
    same = zip(plain.batches(epoch=0, batch_size=8), pooled.batches(epoch=0, batch_size=8))
    assert all(torch.equal(a.x, b.x) for a, b in same)  # empty pool: the plain draws
    pooled.add(torch.full((6, 3, 8, 8), 0.5))
    assert len(pooled.pool) == 4  # bounded: the oldest left
    batch = next(iter(pooled.batches(epoch=0, batch_size=8)))
    assert batch.teacher is None and pooled.with_teacher(None) is pooled
    grey = (batch.x.flatten(1).std(1) < 0.05).sum()  # augmentation keeps a flat image flat
    assert int(grey) == 2  # 25 % of 8 rows come from the pool


def test_hard_neighbours_pick_the_most_confidently_classified_shift(tiny_model, mnist_small):
    x, y = mnist_small[1].floats()[:64], mnist_small[1].labels[:64]
    tiny_model.eval()

    @torch.no_grad()
    def confidence(images, labels):
        return torch.softmax(tiny_model(images), 1)[torch.arange(len(labels)), labels].mean()

    def mean_conf(hard: int) -> list[float]:
        src = NeighbourSource(x, y, families=("colour", "texture", "random_conv"),
                              steps_per_epoch=4, seed=0, hard=hard, scorer=confidence)  # fmt: skip
        return [float(confidence(b.x, b.y)) for b in src.batches(epoch=0, batch_size=32)]

    easy, hard = mean_conf(1), mean_conf(4)
    assert all(h >= e - 1e-6 for e, h in zip(easy, hard))  # each chunk: the first or better
    assert sum(hard) > sum(easy) + 0.05, (easy, hard)
