"""The verification procedure: derive triggers, query the suspect, test, summarise."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import numpy as np
import torch

from verification._backends.base import PROBE_IMAGES, QueryBackend
from verification._errors import SuspectError, VerificationError
from verification._stats.calibration import CalibrationResult, fake_secret_calibration
from verification._stats.effect import effect_size
from verification._stats.parametric import TailFitResult, parametric_tail_test
from verification._stats.pooled import PooledTestResult
from verification._stats.rank import CombinedRankTestResult, combined_rank_test
from verification._verify.queries import QueryOutcome, query_triggers, statistic_definition
from verification._verify.result import NullSummary, VerificationResult
from verification._verify.spec import VerifyConfig, WatermarkSpec, public_null_seed
from verification.stats import POOLED_TESTS
from verification.triggers import Trigger, get_trigger_family, null_secrets

__all__ = ["planned_queries", "verify"]


def _verify_iv(backend: object, spec: object, config: object) -> None:
    if not isinstance(backend, QueryBackend):
        raise VerificationError(f"backend must be a QueryBackend, got {type(backend).__name__}")
    if not isinstance(spec, WatermarkSpec):
        raise VerificationError(f"spec must be a WatermarkSpec, got {type(spec).__name__}")
    if not isinstance(config, VerifyConfig):
        raise VerificationError(f"config must be a VerifyConfig, got {type(config).__name__}")
    images = np.asarray(spec.images)
    want = tuple(images.shape[1:])
    if images.ndim == 4 and tuple(backend.input_shape) != want:
        raise SuspectError(
            f"the suspect backend takes [N, {', '.join(map(str, backend.input_shape))}] inputs, "
            f"the watermark's images are [N, {', '.join(map(str, want))}]"
        )


def _null_seed(backend: QueryBackend, spec: WatermarkSpec, config: VerifyConfig) -> str:
    if config.null_seed is not None:
        return config.null_seed
    if backend.digest is None:
        raise VerificationError(
            "the suspect backend has no digest to derive the null seed from; "
            "pass VerifyConfig(null_seed=...) with a public seed"
        )
    return public_null_seed(suspect_digest=backend.digest, commitment_digest=spec.commitment_digest)


def _triggers(spec: WatermarkSpec, seed: str, m: int) -> tuple[list[Trigger], list[Trigger]]:
    family = get_trigger_family(spec.family)
    secret = [family.derive(s, params=spec.family_params) for s in spec.secrets]
    keys = null_secrets(seed.encode("utf-8"), len(spec.secrets) * m)
    return secret, [family.derive(key, params=spec.family_params) for key in keys]


def _tail_values(
    model: str, outcome: QueryOutcome, g: np.ndarray, n: int
) -> tuple[np.ndarray, int | None] | str:
    """Values and trials the tail model is fitted to, or the reason it does not apply."""
    trials = int(outcome.clean_correct.sum())
    if model == "betabinom":
        if outcome.mode != "labels":
            return "betabinom needs labels mode"
        if trials == 0:
            return "no image is right clean; nothing to fit"
        return np.round(g * n), trials
    if model == "beta" and outcome.mode == "probabilities":
        return (g + 1) / 2, None  # g lies in [-1, 1]
    return g, None


@dataclasses.dataclass(frozen=True, eq=False)
class _TailData:
    """What the supplementary tail model is fitted to (``model`` None: not applicable)."""

    model: str | None
    secret: np.ndarray
    null: np.ndarray
    trials: int | None
    note: str = ""


def _tail_data(
    config: VerifyConfig, outcome: QueryOutcome, g_sec: np.ndarray, g_null: np.ndarray, n: int
) -> _TailData:
    model = config.parametric_model
    if model == "auto":
        model = "betabinom" if outcome.mode == "labels" else "beta"
    if model is None:
        return _TailData(None, g_sec, g_null, None, "parametric tail model disabled")
    prepared = _tail_values(model, outcome, np.concatenate([g_sec, g_null.ravel()]), n)
    if isinstance(prepared, str):
        return _TailData(None, g_sec, g_null, None, f"{model} not fitted: {prepared}")
    vals, trials = prepared
    return _TailData(model, vals[: g_sec.size], vals[g_sec.size :].reshape(g_null.shape), trials)


def _parametric(td: _TailData) -> tuple[tuple[TailFitResult, ...], float | None]:
    """Per-secret tail fits and their combination ``(max_i p_i) ** k``."""
    if td.model is None:
        return (), None
    fits = tuple(
        parametric_tail_test(s, nl, model=td.model, trials=td.trials)
        for s, nl in zip(td.secret, td.null, strict=True)
    )
    ps = [f.pvalue for f in fits]
    return fits, (None if any(p is None for p in ps) else max(ps) ** len(ps))  # type: ignore[type-var]


def _negative_controls(td: _TailData, alpha: float) -> CalibrationResult | None:
    """Each null key as a fake secret against the others (exact and parametric p-values)."""
    if td.null.shape[1] < 3:
        return None
    return fake_secret_calibration(td.null, (alpha,), model=td.model, trials=td.trials)


_FLOOR_WORDS = {"min": "weakest secret's statistic",
                "median": "median of the secrets' statistics"}  # fmt: skip


def floor_value(config: VerifyConfig, g_sec: np.ndarray) -> float:
    """The secrets' statistic the committed effect floor applies to (``config.floor_statistic``)."""
    return float(np.min(g_sec) if config.floor_statistic == "min" else np.median(g_sec))


@dataclasses.dataclass(frozen=True)
class _Decision:
    """The verdict of the configured test: p-value (attempt-adjusted), floor, ranks."""

    evidenced: bool
    statistic: float
    pvalue: float
    pvalue_unadjusted: float
    pvalue_floor: float
    ranks: tuple[int, ...]
    method: str
    pooled: PooledTestResult | None


def _decide(
    config: VerifyConfig, test: CombinedRankTestResult, g_sec: np.ndarray, g_null: np.ndarray
) -> _Decision:
    """Apply the configured test, the attempt factor and the effect-size floor.

    Both extra conditions can only turn a rejection into a non-rejection, so the verdict keeps
    the test's level.
    """
    pooled = None
    if config.test in POOLED_TESTS:
        pooled = POOLED_TESTS[config.test](g_sec, g_null, ties=config.ties, rng=config.seed)
    chosen = pooled if pooled is not None else test
    p = min(1.0, config.attempt * chosen.pvalue)
    floor = min(1.0, config.attempt * chosen.pvalue_floor)
    evidenced = p <= config.alpha and floor_value(config, g_sec) >= config.effect_floor
    ranks = pooled.ranks if pooled is not None else test.ranks
    method = chosen.method + (f"; x{config.attempt} embedding attempts" if config.attempt > 1
                              else "")  # fmt: skip
    return _Decision(evidenced, chosen.statistic, p, chosen.pvalue, floor, ranks, method, pooled)


def _notes(decision: _Decision, config: VerifyConfig, td: _TailData) -> tuple[str, ...]:
    notes = []
    if decision.pvalue_floor > config.alpha:
        notes.append(
            f"the smallest attainable p-value {decision.pvalue_floor:.3g} exceeds alpha "
            f"{config.alpha:g}: use more secrets or null keys"
        )
    if decision.pvalue <= config.alpha and not decision.evidenced:
        notes.append(
            f"p <= alpha, but the {_FLOOR_WORDS[config.floor_statistic]} is below the "
            f"committed effect floor {config.effect_floor:g}: not evidenced"
        )
    if td.note:
        notes.append(td.note)
    return tuple(notes)


def _budget_images(spec: WatermarkSpec, config: VerifyConfig) -> int | None:
    """``config.n_query_images``, or the images per key that fit ``config.query_budget``."""
    budget = config.query_budget
    if budget is None:
        return config.n_query_images
    k, m = len(spec.secrets), config.null_keys_per_secret
    per_image = 1 + k * (1 + m)  # clean + k secret triggers + k * M null triggers
    n = (budget - PROBE_IMAGES) // per_image
    if n < 1:
        raise VerificationError(
            f"a query budget of {budget} is too small: one image per key costs "
            f"{per_image + PROBE_IMAGES} queries with {k} secrets and {m} null keys each"
        )
    return n


def planned_queries(spec: WatermarkSpec, config: VerifyConfig | None = None) -> int:
    """Queries :func:`verify` sends for ``spec`` under ``config``, the probe included.

    ``n * (1 + k * (1 + M)) + PROBE_IMAGES``: every image clean and under each of the ``k``
    secret and ``k * M`` null triggers. A remote suspect's hard query budget is this number.

    Raises:
        VerificationError: The analysis does not fit the watermark (see :func:`verify`).
    """
    config = VerifyConfig() if config is None else config
    n = _n_images(spec, _budget_images(spec, config))
    k = len(spec.secrets)
    return n * (1 + k * (1 + config.null_keys_per_secret)) + PROBE_IMAGES


def _n_images(spec: WatermarkSpec, n: int | None) -> int:
    if n is not None and n > spec.n_images:
        raise VerificationError(
            f"n_query_images={n} exceeds the {spec.n_images} verification images of the watermark"
        )
    return spec.n_images if n is None else n


def _query_shuffled(
    backend: QueryBackend,
    x: torch.Tensor,
    y: torch.Tensor,
    triggers: list[Trigger],
    seed: str,
    config: VerifyConfig,
) -> QueryOutcome:
    """Query the triggers in an order drawn from the public seed, return them in list order.

    Interleaving secret and null triggers means a suspect whose answers drift over time (rate
    limits, warm-up, a stateful endpoint) cannot treat the secrets differently from the null keys
    by their position. For a deterministic suspect the order changes nothing.
    """
    digest = hashlib.sha256(b"mapguard/query-order/v1\x00" + seed.encode("utf-8")).digest()
    order = np.random.default_rng(int.from_bytes(digest[:8], "big")).permutation(len(triggers))
    outcome = query_triggers(
        backend,
        x,
        y,
        [triggers[i] for i in order],
        batch_size=config.batch_size,
        labels_only=config.labels_only,
    )
    back = np.argsort(order)
    return dataclasses.replace(
        outcome, contributions=outcome.contributions[back], accuracies=outcome.accuracies[back]
    )


def verify(
    backend: QueryBackend, spec: WatermarkSpec, config: VerifyConfig | None = None
) -> VerificationResult:
    """Test whether ``backend``'s model carries the watermark ``spec``.

    H0: the suspect was made without knowledge of the secrets. The suspect is queried on the
    first ``n`` verification images clean and stamped with each secret trigger and with ``M``
    null triggers per secret (keys from a public seed, same family and parameters). Each key
    ``K`` gets a statistic ``g(K)`` (labels mode: the fraction of images right clean and wrong
    under ``K``; probability mode: the mean drop of the true-class probability over images right
    clean). With ``config.test`` ``"pooled-min"`` or ``"pooled-rank-sum"`` all keys are ranked
    together (:func:`verification.stats.pooled_min_test`, the weakest secret decides;
    :func:`verification.stats.pooled_rank_sum_test`, the secrets' rank sum decides); with
    ``"exact-max-rank"`` each secret is ranked among its null
    keys and the ranks are combined exactly (:func:`verification.stats.combined_rank_test`).
    The p-value is multiplied by ``config.attempt`` (capped at 1); ``evidenced`` iff it is
    ``<= alpha`` and the secrets' ``config.floor_statistic`` reaches ``config.effect_floor``.
    Validity needs only that secrets and null keys are iid draws from the family and the suspect
    is independent of the secrets (see docs/METHOD.md, section 4).

    Args:
        backend: Query access to the suspect.
        spec: The revealed watermark.
        config: Options (defaults: ``VerifyConfig()``).

    Returns:
        A frozen :class:`VerificationResult`; ``to_dict()`` gives JSON.

    Raises:
        SuspectError: The suspect does not take the watermark's ``[N, 3, S, S]`` or has other
            classes.
        VerificationError: Invalid inputs.
    """
    config = VerifyConfig() if config is None else config
    _verify_iv(backend, spec, config)
    n = _budget_images(spec, config)
    start, queries0 = time.perf_counter(), backend.query_count
    backend.probe(num_classes=spec.num_classes)
    seed, m, k = _null_seed(backend, spec, config), config.null_keys_per_secret, len(spec.secrets)
    secret_triggers, null_triggers = _triggers(spec, seed, m)
    n = _n_images(spec, n)
    x = torch.from_numpy(spec.images[:n]).float().div(255.0)
    y = torch.from_numpy(spec.labels[:n])
    outcome = _query_shuffled(backend, x, y, secret_triggers + null_triggers, seed, config)
    sec_c, null_c = outcome.contributions[:k], outcome.contributions[k:].reshape(k, m, n)
    g_sec, g_null = sec_c.mean(axis=1), null_c.mean(axis=2)
    test = combined_rank_test(g_sec, list(g_null), ties=config.ties, rng=config.seed)
    decision = _decide(config, test, g_sec, g_null)
    td = _tail_data(config, outcome, g_sec, g_null, n)
    fits, parametric_p = _parametric(td)
    effect = effect_size(
        sec_c,
        null_c,
        confidence_level=config.confidence_level,
        n_resamples=config.n_resamples,
        rng=config.seed,
    )
    return VerificationResult(
        evidenced=bool(decision.evidenced),
        statistic=decision.statistic,
        pvalue=decision.pvalue,
        pvalue_unadjusted=decision.pvalue_unadjusted,
        pvalue_floor=decision.pvalue_floor,
        method=decision.method,
        pooled=decision.pooled,
        alpha=float(config.alpha),
        test=test,
        mode=outcome.mode,
        statistic_definition=statistic_definition(
            "target" in secret_triggers[0].details, outcome.mode
        ),
        secret_stats=tuple(float(v) for v in g_sec),
        ranks=decision.ranks,
        null_stats=tuple(tuple(float(v) for v in row) for row in g_null),
        null_summary=NullSummary.of(g_null),
        clean_accuracy=float(outcome.clean_correct.mean()),
        triggered_accuracies=tuple(float(a) for a in outcome.accuracies[:k]),
        null_triggered_accuracy=float(outcome.accuracies[k:].mean()),
        effect=effect,
        parametric_pvalue=parametric_p,
        parametric=fits,
        negative_controls=_negative_controls(td, config.alpha),
        n_images=n,
        n_secrets=k,
        null_keys_per_secret=m,
        queries=backend.query_count - queries0,
        null_seed=seed,
        suspect_digest=backend.digest,
        owner_key=spec.owner_key,
        family=spec.family,
        family_params=dict(spec.family_params),
        secret_triggers=tuple(t.describe() for t in secret_triggers),
        notes=_notes(decision, config, td),
        wall_time_s=time.perf_counter() - start,
        config=config,
        secret_contributions=sec_c,
        null_contributions=null_c,
    )
