"""The channels on natural inputs (keyed cosine tilt, keyed pair preferences) on real digits: the
null calibration of their exact rank test, and the owner's marked model evidenced where an
independent model is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mapguard.models import create_model
from mapguard.training import train_model
from mapguard.watermark import (
    TiltRecipe,
    boundary_images,
    embed_tilt,
    torch_preference,
    torch_tilt,
)
from verification.tilt import (
    CosineTiltFamily,
    PairPreferenceFamily,
    PreferenceReference,
    TiltQueries,
    TiltReference,
    lowfreq_features,
    tilt_test,
)
from verification.triggers import null_secrets, random_secret

FAMILIES = {
    "cosine": CosineTiltFamily(num_classes=10),
    "preference": PairPreferenceFamily(num_classes=10),
}


@pytest.fixture(params=sorted(FAMILIES))
def family(request):  # noqa: ANN001, ANN201
    return FAMILIES[request.param]


@pytest.fixture(scope="module")
def queries(tiny_model, mnist_small) -> TiltQueries:
    _, test = mnist_small
    x, y = test.floats(), test.labels
    bset = boundary_images(tiny_model, x[200:], y[200:], 300, seed=0)
    return TiltQueries(test.images[:200].numpy(), bset.images, bset.pairs)


@pytest.fixture(scope="module")
def independent(mnist_small):
    torch.manual_seed(5)
    model = create_model("vgg_tiny", num_classes=10)
    return train_model(model, mnist_small[0], epochs=3, lr=0.05, seed=5, progress=False).eval()


@torch.no_grad()
def _answers(model, queries: TiltQueries) -> dict:  # noqa: ANN001
    bnd = torch.tensor(queries.boundary, dtype=torch.float32) / 255
    logprobs = F.log_softmax(model.eval()(bnd), 1).double()
    return {"suspect_labels": logprobs.argmax(1).numpy(), "suspect_logprobs": logprobs.numpy()}


def _verify(model, family, secret: bytes, queries: TiltQueries, m: int = 299) -> dict:  # noqa: ANN001
    nulls = null_secrets(b"test-null-seed" + secret[:4], m)
    return tilt_test(family, secret, nulls, queries, **_answers(model, queries))


def test_fake_secrets_on_an_independent_model_are_not_evidenced_more_than_alpha(
    independent, queries, family
) -> None:
    """Fake secrets, each ranked among its own committed-style null keys: the p-values of a
    model built without them are not smaller than uniform (200 fake secrets, M = 99)."""
    rng = np.random.default_rng(0)
    answers = _answers(independent, queries)
    p = {"labels": [], "probs": []}
    for _ in range(200):
        secret = random_secret(rng)
        res = tilt_test(family, secret, null_secrets(rng.bytes(32), 99), queries, **answers)
        for name in p:
            p[name].append(res[name].pvalue)
    for name, values in p.items():
        values = np.array(values)
        # binomial(200, alpha) upper 99.9% bounds: 19 of 200 at 0.05, 7 at 0.01
        assert (values <= 0.05).sum() <= 19, name
        assert (values <= 0.01).sum() <= 7, name
        assert 0.3 < values.mean() < 0.7, name  # not piled up at 1 either (a dead statistic)


def test_marked_model_is_evidenced_and_an_independent_model_is_not(
    tiny_model, independent, mnist_small, queries, family
) -> None:
    """The embedding puts the secret's channel into the model (the owner's own copy ranks
    first); a model trained without it does not. (Students: docs/ROBUSTNESS.md, issue 15.)"""
    secret = random_secret(np.random.default_rng(11))
    natural = lowfreq_features(queries.natural, grid=family.grid, order=family.order)
    if isinstance(family, CosineTiltFamily):
        key = family.derive(secret)
        shift = torch_tilt(family, key, TiltReference.from_features(key, natural), side=32)
    else:
        key = family.derive(secret)
        ref = PreferenceReference.from_features(key, natural)
        shift = torch_preference(family, key, ref, 32, tiny_model)
    train = mnist_small[0].floats()
    marked = embed_tilt(tiny_model, train, shift, TiltRecipe(eps=1.0, epochs=4), seed=0)
    assert _verify(marked, family, secret, queries)["labels"].pvalue <= 0.01
    innocent = _verify(independent, family, secret, queries)
    assert min(innocent["labels"].pvalue, innocent["probs"].pvalue) > 0.01, innocent


def test_boundary_teaching_options_are_checked(tiny_model, mnist_small) -> None:
    with pytest.raises(ValueError, match="pair_weight needs"):
        TiltRecipe(pair_weight=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        TiltRecipe(boundary=-1)
    family = CosineTiltFamily(num_classes=10)
    key = family.derive(bytes(32))
    train = mnist_small[0].floats()[:64]
    natural = lowfreq_features(train.numpy(), grid=family.grid, order=family.order)
    shift = torch_tilt(family, key, TiltReference.from_features(key, natural), side=32)
    with pytest.raises(ValueError, match="training labels"):
        embed_tilt(tiny_model, train, shift, TiltRecipe(boundary=8, epochs=1), seed=0)
