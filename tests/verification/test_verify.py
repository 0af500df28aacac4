"""verify() end to end on real tiny models: a model broken only by the secret triggers is
evidenced at the exact floor; independent models are not; results are reproducible, JSON-safe
and carry no secret."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from verification._errors import SuspectError, TriggerError, VerificationError
from verification.backends import LabelsOnly, ModuleBackend, QueryBackend, load_suspect
from verification.triggers import get_trigger_family, random_secret
from verification.verify import VerifyConfig, WatermarkSpec, public_null_seed, verify

C = 10


class Teacher(torch.nn.Module):
    """Fixed random linear classifier; the verification labels are its own predictions."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = torch.nn.Linear(3 * 32 * 32, C)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(C, 3 * 32 * 32, generator=g) / 3)  # sharp softmax
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((x - 0.5).flatten(1))


class SecretDetector(torch.nn.Module):
    """``base`` that answers a wrong class exactly when one of ``triggers`` is stamped.

    A stand-in for a stolen watermarked model: a real module, not a mock of the verifier.
    """

    def __init__(self, base: torch.nn.Module, triggers) -> None:
        super().__init__()
        self.base = base
        idx = [torch.nonzero(t.alpha_map.expand(3, -1, -1).flatten() > 0)[:, 0] for t in triggers]
        width = max(len(i) for i in idx)
        idx = [torch.cat([i, i[:1].expand(width - len(i))]) for i in idx]  # pad by repetition
        pattern = [t.pattern.flatten()[i] for t, i in zip(triggers, idx)]
        self.register_buffer("index", torch.stack(idx))  # [T, L] flat pixel indices
        self.register_buffer("pattern", torch.stack(pattern))  # [T, L] their trigger values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.base(x)
        stamped = x.flatten(1)[:, self.index]  # [N, T, L]
        hit = ((stamped - self.pattern).abs().amax(dim=2) < 1e-6).any(dim=1)
        wrong = torch.nn.functional.one_hot((logits.argmax(dim=1) + 1) % C, C)
        return logits + 100.0 * hit[:, None] * wrong


def make_spec(*, n=40, k=3, seed=0, family="patch", commitment="sha256:commit") -> WatermarkSpec:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    with torch.no_grad():
        labels = Teacher(seed)(torch.from_numpy(images).float() / 255).argmax(dim=1).numpy()
    return WatermarkSpec(
        family=family,
        secrets=tuple(random_secret(rng) for _ in range(k)),
        images=images,
        labels=labels,
        num_classes=C,
        commitment_digest=commitment,
    )


def stolen(spec: WatermarkSpec, which=None) -> SecretDetector:
    fam = get_trigger_family(spec.family)
    secrets = spec.secrets if which is None else [spec.secrets[i] for i in which]
    return SecretDetector(Teacher(0), [fam.derive(s, params=spec.family_params) for s in secrets])


SMALL = VerifyConfig(null_keys_per_secret=19, n_resamples=500)


@pytest.fixture(scope="module")
def spec() -> WatermarkSpec:
    return make_spec()


def test_watermarked_model_is_evidenced_at_the_floor(spec):
    res = verify(ModuleBackend(stolen(spec)), spec, SMALL)
    assert res.ranks == (1, 1, 1)
    assert res.pvalue == pytest.approx((1 / 20) ** 3) == res.pvalue_floor
    assert res.evidenced and res.mode == "probabilities"
    # the detector moves to (predicted + 1) mod C, which is sometimes the true class again
    assert res.clean_accuracy == 1.0 and max(res.triggered_accuracies) <= 0.15
    assert min(res.secret_stats) > res.null_summary.max  # probability drops, in [-1, 1]
    assert res.effect.ci_low > 0.5 and res.effect.confidence_level == 0.95
    assert res.queries == 2 + 40 * (1 + 3 + 3 * 19)
    assert res.parametric_pvalue is not None and res.parametric_pvalue < res.pvalue
    assert res.negative_controls.exact_fraction == (0.0,)
    assert len(res.null_stats) == 3 and all(len(r) == 19 for r in res.null_stats)


@pytest.mark.parametrize("how", ["config", "backend"])
def test_labels_only(spec, how):
    backend = ModuleBackend(stolen(spec))
    if how == "backend":
        backend = LabelsOnly(backend)
    cfg = VerifyConfig(null_keys_per_secret=19, n_resamples=500, labels_only=how == "config")
    res = verify(backend, spec, cfg)
    assert res.mode == "labels" and res.evidenced and res.ranks == (1, 1, 1)
    assert min(res.secret_stats) >= 0.85 > 0.5 > res.null_summary.max
    assert res.parametric and res.parametric[0].model == "betabinom"
    assert "right clean and wrong" in res.statistic_definition


def test_every_secret_must_be_effective(spec):
    res = verify(ModuleBackend(stolen(spec, which=[0, 1])), spec, SMALL)
    assert res.ranks[:2] == (1, 1) and res.ranks[2] > 1
    assert not res.evidenced and res.pvalue > 1e-3


def test_independent_models_are_not_evidenced(spec):
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(128, C),
    )
    models = [Teacher(0), cnn] + [Teacher(seed) for seed in range(100, 104)]
    pvalues = []
    for model in models:
        for labels_only in (False, True):
            cfg = VerifyConfig(null_keys_per_secret=19, n_resamples=200, labels_only=labels_only)
            res = verify(ModuleBackend(model), spec, cfg)
            assert not res.evidenced
            pvalues.append(res.pvalue)
    assert min(pvalues) > 1e-3 and np.median(pvalues) > 0.01


def test_teacher_is_hurt_by_patches_yet_not_evidenced(spec):
    """Any patch costs an honest model some accuracy (the prototype's McNemar pitfall); the
    random-key null absorbs it."""
    res = verify(ModuleBackend(Teacher(0)), spec, SMALL)
    assert res.null_summary.mean > 0 and min(res.triggered_accuracies) < 1.0
    assert not res.evidenced


def test_null_seed_is_public_and_reproducible(spec):
    backend = ModuleBackend(Teacher(0))
    first, second = verify(backend, spec, SMALL), verify(backend, spec, SMALL)
    assert first.null_seed == public_null_seed(
        suspect_digest=backend.digest, commitment_digest="sha256:commit"
    )
    assert first.null_stats == second.null_stats and first.pvalue == second.pvalue
    assert first.effect == second.effect
    other = make_spec(commitment="sha256:other")
    assert verify(backend, other, SMALL).null_stats != first.null_stats
    fixed = VerifyConfig(null_keys_per_secret=19, n_resamples=500, null_seed="public-seed")
    assert verify(backend, spec, fixed).null_seed == "public-seed"


def test_result_is_json_safe_and_keeps_the_secret_out(spec):
    res = verify(ModuleBackend(stolen(spec)), spec, SMALL)
    text = json.dumps(res.to_dict(), allow_nan=False)
    for secret in spec.secrets:
        assert secret.hex() not in text
    data = json.loads(text)
    assert data["evidenced"] is True and data["config"]["null_keys_per_secret"] == 19
    assert "secret_contributions" not in data
    assert data["secret_triggers"][0]["family"] == "patch"
    ci99 = res.confidence_interval(0.99)
    assert ci99.ci_high - ci99.ci_low >= res.effect.ci_high - res.effect.ci_low


def test_notes_and_n_query_images(spec):
    cfg = VerifyConfig(n_query_images=10, null_keys_per_secret=4, n_resamples=200)
    res = verify(ModuleBackend(Teacher(0)), spec, cfg)  # floor (1/5)**3 > alpha
    assert res.n_images == 10 and res.queries == 2 + 10 * (1 + 3 + 12)
    assert any("smallest attainable p-value" in note for note in res.notes)
    with pytest.raises(VerificationError, match="n_query_images=41 exceeds the 40"):
        verify(ModuleBackend(Teacher(0)), spec, VerifyConfig(n_query_images=41))


def test_query_budget_sets_the_images_per_key(spec):
    """probe (2) + n * (1 clean + 3 secrets + 3 * 4 null keys) within the budget, n largest."""
    per_image = 1 + 3 * (1 + 4)
    cfg = VerifyConfig(query_budget=2 + 7 * per_image + 15, null_keys_per_secret=4, n_resamples=200)
    res = verify(ModuleBackend(Teacher(0)), spec, cfg)
    assert res.n_images == 7 and res.queries == 2 + 7 * per_image
    with pytest.raises(VerificationError, match="query budget of 17 is too small.* 18 queries"):
        verify(
            ModuleBackend(Teacher(0)), spec, VerifyConfig(query_budget=17, null_keys_per_secret=4)
        )
    with pytest.raises(VerificationError, match="not both"):
        VerifyConfig(query_budget=1000, n_query_images=5)


def test_blend_family_end_to_end():
    spec = make_spec(n=20, k=2, family="blend")
    res = verify(ModuleBackend(Teacher(0)), spec, SMALL)
    assert res.family == "blend" and not res.evidenced
    assert res.family_params == {"image_size": 32, "density": 0.25, "alpha": 0.15}


def test_suspect_with_other_classes(spec):
    five = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 5))
    with pytest.raises(SuspectError, match="outputs 5 classes, the watermark has 10"):
        verify(ModuleBackend(five), spec, SMALL)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0}, r"alpha must be a number in \(0, 1\), got 0"),
        ({"null_keys_per_secret": 0}, "null_keys_per_secret must be an integer >= 1, got 0"),
        ({"ties": "mid"}, "ties must be one of conservative, randomized; got 'mid'"),
        ({"parametric_model": "gamma"}, "parametric_model must be None or one of"),
        ({"null_seed": ""}, "null_seed must be a non-empty string"),
        ({"n_resamples": 5}, "n_resamples must be an integer >= 100"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(VerificationError, match=match):
        VerifyConfig(**kwargs)


def test_spec_validation(spec):
    base = {
        "family": "patch",
        "secrets": spec.secrets,
        "images": spec.images,
        "labels": spec.labels,
        "num_classes": C,
    }
    cases = [
        ({"images": spec.images.astype(np.float32)}, VerificationError, "images must be uint8"),
        ({"secrets": (spec.secrets[0],) * 2}, VerificationError, "distinct"),
        ({"secrets": ()}, VerificationError, "non-empty"),
        ({"secrets": (b"x",)}, TriggerError, "32 bytes"),
        ({"labels": spec.labels + 10}, VerificationError, r"labels must be integers in \[0, 10\)"),
        ({"labels": spec.labels[:5]}, VerificationError, "n labels"),
        ({"num_classes": 1}, VerificationError, "num_classes must be an integer >= 2"),
        ({"family": "nope"}, TriggerError, "unknown trigger family 'nope'"),
        ({"family_params": {"alpha": 2}}, TriggerError, "alpha must be a number"),
    ]
    for change, error, match in cases:
        with pytest.raises(error, match=match):
            WatermarkSpec(**{**base, **change})


def test_full_size_protocol_from_a_model_file(tmp_path):
    """k=3 secrets, M=99 null keys, n=100 images: 30,100 queries reach p = 1e-6 exactly."""
    spec = make_spec(n=100, k=3, seed=1)
    path = tmp_path / "stolen.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(stolen(spec).eval(), torch.rand(2, 3, 32, 32)).save(str(path))
    backend = load_suspect(path, num_classes=C, labels_only=True)
    res = verify(backend, spec, VerifyConfig())
    assert res.queries == 2 + 100 * (1 + 3 + 297)
    assert res.pvalue == pytest.approx(1e-6) and res.evidenced
    assert res.suspect_digest == backend.digest


class DriftingSuspect(QueryBackend):
    """An innocent model behind a flaky endpoint: its first triggered batch is all wrong."""

    def __init__(self) -> None:
        super().__init__(digest="sha256:drifting")
        self.teacher, self.calls = Teacher(0), 0

    def predict(self, batch):
        self.calls += 1  # call 1: probe, call 2: clean images, call 3: first triggered batch
        labels = self.teacher(batch).argmax(dim=1)
        return (labels + 1) % C if self.calls == 3 else labels


def test_drifting_suspect_cannot_single_out_the_secrets(spec):
    """Secret and null triggers are queried in a public random order; were the three secrets
    queried first (one batch of 3 x 40 images), this endpoint would give p = (1/20)**3."""
    cfg = VerifyConfig(null_keys_per_secret=19, n_resamples=200, batch_size=120)
    res = verify(DriftingSuspect(), spec, cfg)
    assert res.mode == "labels" and not res.evidenced
    assert sorted(res.ranks) != [1, 1, 1]


class WeakenedDetector(SecretDetector):
    """A theft that weakened some secrets: trigger ``i`` moves only images whose first pixel
    is below ``strength[i]`` (about that fraction of the uniform-noise verification images)."""

    def __init__(self, base: torch.nn.Module, triggers, strength) -> None:
        super().__init__(base, triggers)
        self.register_buffer("strength", torch.tensor(strength))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.base(x)
        stamped = x.flatten(1)[:, self.index]  # [N, T, L]
        per_trigger = (stamped - self.pattern).abs().amax(dim=2) < 1e-6
        hit = (per_trigger & (x.flatten(1)[:, :1] < self.strength)).any(dim=1)
        wrong = torch.nn.functional.one_hot((logits.argmax(dim=1) + 1) % C, C)
        return logits + 100.0 * hit[:, None] * wrong


@pytest.mark.parametrize(("rule", "evidenced"), [("min", False), ("median", True)])
def test_effect_floor_applies_to_the_committed_statistic(spec, rule, evidenced):
    """One secret weakened (still ranked first): the weakest-secret floor loses the verdict,
    the median floor keeps it; the p-value is the same under both."""
    fam = get_trigger_family(spec.family)
    triggers = [fam.derive(s, params=spec.family_params) for s in spec.secrets]
    model = WeakenedDetector(Teacher(0), triggers, [0.3, 1.0, 1.0])
    cfg = VerifyConfig(null_keys_per_secret=19, n_resamples=200, labels_only=True,
                       test="pooled-min", effect_floor=0.5, floor_statistic=rule)  # fmt: skip
    res = verify(ModuleBackend(model), spec, cfg)
    g = sorted(res.secret_stats)
    assert g[0] < 0.5 <= g[1] and res.pvalue == res.pvalue_floor <= 1e-3
    assert res.evidenced is evidenced
    assert any("effect floor" in note for note in res.notes) is not evidenced
    with pytest.raises(VerificationError, match="floor_statistic must be one of"):
        VerifyConfig(floor_statistic="mean")


def test_the_rank_sum_survives_one_erased_secret_the_minimum_does_not():
    """k = 8, M = 7 (the default analysis), labels, median floor: a theft erased one secret
    (it ranks among the null keys), the other seven are the top keys. The committed pooled-min
    test does not reject; the committed pooled-rank-sum test does (its exact tail at the
    secrets' rank sum), and the floor on the median still applies to it."""
    from math import comb

    from verification._stats.ranksum import rank_sum_counts

    spec8 = make_spec(k=8, seed=3)
    fam = get_trigger_family(spec8.family)
    triggers = [fam.derive(s, params=spec8.family_params) for s in spec8.secrets]
    model = WeakenedDetector(Teacher(3), triggers, [0.0] + [1.0] * 7)  # the spec's labeller
    results = {}
    for test in ("pooled-min", "pooled-rank-sum"):
        cfg = VerifyConfig(null_keys_per_secret=7, n_resamples=200, labels_only=True, test=test,
                           effect_floor=0.5, floor_statistic="median")  # fmt: skip
        results[test] = verify(ModuleBackend(model), spec8, cfg)
    low, rs = results["pooled-min"], results["pooled-rank-sum"]
    assert low.secret_stats == rs.secret_stats and rs.secret_stats[0] < 0.5
    assert max(rs.ranks[1:]) <= 7 < 8 < rs.ranks[0]  # conservative ties: worst rank of a tie
    assert low.pvalue > 1e-3 and not low.evidenced
    w = sum(rs.ranks)
    tail = sum(rank_sum_counts(64, 8)[: w - 36 + 1]) / comb(64, 8)
    assert rs.pvalue == pytest.approx(tail, rel=1e-12) and rs.pvalue <= 1e-3 and rs.evidenced
    assert rs.pooled is not None and rs.pooled.count == w and "rank-sum" in rs.method
    assert rs.pvalue_floor == low.pvalue_floor == 1 / comb(64, 8)
    strict = VerifyConfig(null_keys_per_secret=7, n_resamples=200, labels_only=True,
                          test="pooled-rank-sum", effect_floor=0.99)  # fmt: skip
    assert not verify(ModuleBackend(model), spec8, strict).evidenced  # the floor still binds
