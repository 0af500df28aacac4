"""The embedding's stopping rule: rehearse the self-check while the mask learns, stop when met.

Every ``EmbedConfig.stop_every`` training images the mask learner has seen (checked at the end of
an epoch), the mask as it stands is applied to the original model and *rehearsed* on tuning
images: held-out images outside the verification set (drawn from ``EmbedConfig.seed``, before the
secrets). The rehearsal is the committed analysis itself (:func:`verification.verify.verify`, the
same ``k``, ``M``, images per key, test, mode rule, alpha, floor statistic) with null keys from a
fixed public rehearsal seed (not the self-check's, which comes from the commitment), plus the
clean-accuracy cost on all tuning images. Learning stops at the first rehearsal that is evidenced
with the effect floor raised by ``stop_margin`` and costs at most ``max_accuracy_drop``; without
one, the whole budget is learned. A cheap pre-check (clean and secret-triggered labels only)
skips the full rehearsal while the secrets' effects or the cost are plainly short.

Under ``torchrun`` rank 0 alone rehearses (the other ranks wait in the broadcast of its decision)
and every rank takes rank 0's decision, so all ranks stop after the same epoch
(``tests/watermark/test_embed_distributed.py`` runs it with two gloo processes).

The rule and all its numbers are fields of the recipe, fixed before the secrets are drawn and
written to ``embed-config.json``; what each rehearsal found is written to ``metrics.json``
(``learning.rehearsals``). It selects nothing among secrets: the secrets are drawn once, and the
rule only decides how long the mask learns them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mapguard.masking import EpochInfo, apply_mask, broadcast_from_main, dist_info
from mapguard.training import predict_logits
from mapguard.watermark._config import EmbedConfig
from mapguard.watermark._recipe import EmbedInputs, VerificationSet, pixels
from protocols.analysis import claim_null_seed
from verification.backends import ModuleBackend
from verification.triggers import Trigger
from verification.verify import VerifyConfig, WatermarkSpec, floor_value, verify

__all__ = ["REHEARSAL_NONCE", "StopRule", "TuningSet", "draw_tuning_set"]

#: The public claim nonce of the rehearsals' null keys (never the self-check's).
REHEARSAL_NONCE = "mapguard embed rehearsal"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class TuningSet:
    """Held-out images outside the verification set (uint8 and float), with their labels."""

    images: np.ndarray
    labels: np.ndarray
    indices: tuple[int, ...]

    def floats(self) -> torch.Tensor:
        return torch.from_numpy(self.images).float() / 255.0


def spare_images(inp: EmbedInputs, cfg: EmbedConfig) -> int:
    """How many held-out images the verification set leaves for tuning."""
    return max(0, len(inp.holdout) - cfg.n_verification)


def draw_tuning_set(inp: EmbedInputs, cfg: EmbedConfig, vset: VerificationSet) -> TuningSet:
    """Up to ``stop_images`` held-out images outside ``vset``, drawn from ``cfg.seed``."""
    taken = set(vset.indices)
    spare = np.array([i for i in range(len(inp.holdout)) if i not in taken], dtype=np.int64)
    rng = np.random.default_rng([cfg.seed, 0x570])
    idx = np.sort(rng.permutation(spare)[: cfg.stop_images])
    pick = torch.from_numpy(idx)
    return TuningSet(
        images=pixels(inp.holdout, pick).numpy(),
        labels=inp.holdout.labels[pick].numpy(),
        indices=tuple(int(i) for i in idx),
    )


class StopRule:
    """The learner callback of the stopping rule (see the module docstring). The cost is the
    clean-accuracy loss against ``reference`` (default ``inp.model``; with a committed channel
    the original model, since the mask applies to the channel's taught weights).

    Attributes:
        rehearsals: One dict per rehearsal (images seen, cost, secret effects, p-value if the
            full rehearsal ran, whether the rule was met), in order.
    """

    def __init__(
        self,
        inp: EmbedInputs,
        cfg: EmbedConfig,
        tuning: TuningSet,
        secrets: list[bytes],
        triggers: list[Trigger],
        params: Mapping[str, Any],
        device: torch.device,
        reference: torch.nn.Module | None = None,
    ) -> None:
        self.inp, self.cfg, self.tuning, self.device = inp, cfg, tuning, device
        self.reference = inp.model if reference is None else reference
        self.secrets, self.triggers, self.params = secrets, triggers, params
        self.rehearsals: list[dict[str, Any]] = []
        self.seconds = 0.0
        self._next = cfg.stop_every
        self._x = tuning.floats()
        self._y = torch.from_numpy(tuning.labels)
        self._before: float | None = None
        self._config = self._verify_config()

    def __call__(self, info: EpochInfo) -> bool:
        seen = info.epoch * info.steps * self.cfg.mask.batch_size
        if self._next is None or seen < self._next:
            return False
        while self._next <= seen:
            self._next += self.cfg.stop_every
        met = None
        if dist_info().is_main:
            t0 = time.perf_counter()
            record = {"train_images": seen, "epoch": info.epoch, **self._rehearse(info)}
            self.rehearsals.append(record)
            self.seconds += time.perf_counter() - t0
            met = record["met"] and self.cfg.stop_rule == "level"
        return bool(broadcast_from_main(met))

    @torch.no_grad()
    def _labels(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return predict_logits(model, x, device=self.device).argmax(1)

    def _rehearse(self, info: EpochInfo) -> dict[str, Any]:
        """The pre-check, then (if it passes) the committed analysis on the tuning images."""
        cfg = self.cfg
        model = apply_mask(self.inp.model, info.current_mask()).to(self.device).eval()
        if self._before is None:
            self._before = _rate(self._labels(self.reference, self._x) == self._y)
        clean = self._labels(model, self._x) == self._y
        cost = self._before - _rate(clean)
        effects = [_rate(clean & (self._labels(model, t.apply(self._x)) != self._y))
                   for t in self.triggers]  # fmt: skip
        floor = cfg.effect_floor + cfg.stop_margin
        record: dict[str, Any] = {"cost": cost, "effects": effects, "met": False}
        if cost > cfg.max_accuracy_drop + 1e-6 or self._floor(effects) < floor:
            return record
        res = self._verify(model)
        stat = self._floor(res.secret_stats)
        record |= {"pvalue": res.pvalue, "met": bool(res.pvalue <= cfg.alpha and stat >= floor)}
        return record

    def _floor(self, effects: Sequence[float]) -> float:
        """The secrets' statistic the committed effect floor applies to."""
        return floor_value(self._config, np.asarray(effects, dtype=float))

    def _verify_config(self) -> VerifyConfig:
        """The committed analysis on the tuning images, with the rehearsal's null keys."""
        n = min(self.cfg.n_verification, len(self.tuning.labels))
        analysis = self.cfg.replace(n_verification=n).analysis()
        seed = claim_null_seed(commitment_digest=f"seed:{self.cfg.seed}",
                               claim_nonce=REHEARSAL_NONCE)  # fmt: skip
        return VerifyConfig.from_analysis(analysis, null_seed=seed, gives_probabilities=True)

    def _verify(self, model: torch.nn.Module):  # noqa: ANN202 - a VerificationResult
        n = self.cfg.n_verification
        spec = WatermarkSpec(
            family=self.cfg.family,
            family_params=dict(self.params),
            secrets=tuple(self.secrets),
            images=self.tuning.images[:n],
            labels=self.tuning.labels[:n],
            num_classes=self.inp.meta.num_classes,
        )
        backend = ModuleBackend(model, device=self.device, digest="rehearsal",
                                input_shape=spec.images.shape[1:])  # fmt: skip
        return verify(backend, spec, self._config)

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` records under ``learning``."""
        met = [r for r in self.rehearsals if r["met"]]
        return {
            "stop_rule": self.cfg.stop_rule,
            "rehearsals": self.rehearsals,
            "rehearsal_seconds": self.seconds,
            "met_at_train_images": met[0]["train_images"] if met else None,
        }


def _rate(hits: torch.Tensor) -> float:
    return float(hits.float().mean()) if hits.numel() else 0.0
