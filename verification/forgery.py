"""The arbiter's forgery audit: could a claimant who saw the suspect have *selected* this evidence?

The exact test's p-value is valid when the secrets were drawn before, and independently of, the
suspect. A claimant who saw an innocent model first can break that: draw many random keys, score
them on the model, and commit the best ``k`` as "secrets" — together with verification images of
their own choosing and an effect floor of their own choosing, since the claimant writes the whole
commitment. Measured (docs/METHOD.md, "The forgery audit"): on an independently trained MNIST
model, 64 natural test images chosen to be fragile toward one class plus the best 8 of 2,000
random keys were **evidenced** at p = 2.3e-10 with a median ``g`` of 0.52 — above the default
floor. The committed floor alone does not stop that; a trusted timestamp that predates the
suspect does (:mod:`verification.timestamps`).

The audit repeats the claimant's search on the arbiter's side: ``n_keys`` *audit keys*, derived
from the claim's null seed (so neither party chooses them; ``HKDF`` info
``mapguard/forgery-audit/v1``), are scored on the suspect with the committed family, parameters,
images and mode, exactly like the null keys. The secrets' floor statistic (weakest or median, as
committed) is compared with the same statistic of the best ``k`` audit keys: if the best ``k``
of ``n_keys`` random keys reach it, a claimant with ``n_keys`` draws could have produced this
evidence on this suspect with these images, and the verdict cannot exclude selection
(``forgeable``). The audit only adds a condition to ``evidenced``, so the level is kept; it
excludes claimants who drew up to about ``n_keys`` keys, not stronger ones (``keys_reaching``
and the audit keys' tail are reported so a reader can judge how far below the secrets the
random keys stay).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from verification._backends.base import QueryBackend
from verification._errors import VerificationError
from verification._verify.queries import query_triggers
from verification._verify.result import VerificationResult
from verification._verify.result_document import audit_veto
from verification._verify.run import floor_value
from verification._verify.spec import WatermarkSpec
from verification.triggers import Trigger, get_trigger_family, null_secrets

__all__ = [
    "AUDIT_INFO",
    "ForgeryAudit",
    "audit_seed",
    "audit_triggers",
    "audit_veto",
    "check_audit",
    "forgery_audit",
]

#: Domain separation of the audit keys from the null keys (same seed, other keys).
AUDIT_INFO = b"mapguard/forgery-audit/v1\x00"


def audit_seed(null_seed: str) -> bytes:
    """The audit keys' seed: SHA-256 of :data:`AUDIT_INFO` and the claim's null seed."""
    return hashlib.sha256(AUDIT_INFO + null_seed.encode("utf-8")).digest()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ForgeryAudit:
    """Outcome of :func:`forgery_audit`.

    Attributes:
        n_keys: Audit keys scored.
        n_secrets: ``k``, the number of keys a claimant keeps.
        floor_statistic: ``"min"`` or ``"median"`` (the committed one).
        secrets_value: The secrets' floor statistic on the suspect.
        audit_value: The same statistic of the best ``k`` audit keys.
        keys_reaching: Audit keys whose ``g`` reaches ``secrets_value``.
        audit_max, audit_q99: The largest and the 99th-percentile audit-key ``g``.
        forgeable: ``audit_value >= secrets_value``: ``n_keys`` random draws reach the evidence
            (:attr:`estimated_draws`: about how many a claimant needs).
        queries: Images sent to the suspect by the audit.
        seed: Hex of the audit keys' seed (:func:`audit_seed`).
        match_classes: Whether only keys of the secrets' target classes were audited.
        wall_time_s: Seconds taken.
        key_stats: ``g`` of every audit key, in key order (not in :meth:`to_dict`).
    """

    n_keys: int
    n_secrets: int
    floor_statistic: str
    secrets_value: float
    audit_value: float
    keys_reaching: int
    audit_max: float
    audit_q99: float
    forgeable: bool
    queries: int
    seed: str
    match_classes: bool
    wall_time_s: float
    key_stats: np.ndarray = dataclasses.field(repr=False, compare=False)

    @property
    def keys_needed(self) -> int:
        """How many keys must reach ``secrets_value`` for the best ``k`` to reach it: all ``k``
        (weakest) or ``ceil((k + 1) / 2)`` (median)."""
        k = self.n_secrets
        return k if self.floor_statistic == "min" else -(-(k + 1) // 2)

    @property
    def estimated_draws(self) -> float | None:
        """Random draws a claimant needs, estimated from the audit (``keys_needed`` over the
        fraction of audit keys that reach ``secrets_value``); None when none of them does (more
        than about ``n_keys``, not bounded further). Counted in audited keys: with
        ``match_classes`` these are keys of the secrets' classes, which a claimant draws a
        fraction of their draws as."""
        if self.keys_reaching == 0:
            return None
        return self.keys_needed * self.n_keys / self.keys_reaching

    @property
    def sentence(self) -> str:
        """The audit's finding in one sentence."""
        stat = "median" if self.floor_statistic == "median" else "weakest"
        head = (f"the best {self.n_secrets} of {self.n_keys:,} random keys reach a {stat} g "
                f"of {self.audit_value:.3f} against the secrets' "
                f"{self.secrets_value:.3f}")  # fmt: skip
        if self.forgeable:
            return (head + ": a claimant who saw the suspect could have selected this evidence "
                    f"(about {self.estimated_draws:,.0f} random draws)")  # fmt: skip
        return (head + f" ({self.keys_reaching} of {self.n_keys:,} keys reach it): selection "
                f"from up to about {self.n_keys:,} draws is excluded")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the result document's ``forgery_audit`` block, with ``sentence``)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del out["key_stats"]
        return {**out, "estimated_draws": self.estimated_draws, "sentence": self.sentence}


def forgery_audit(
    backend: QueryBackend,
    spec: WatermarkSpec,
    result: VerificationResult,
    *,
    n_keys: int,
    match_classes: bool = False,
    batch_size: int = 512,
) -> ForgeryAudit:
    """Score ``n_keys`` audit keys on the suspect behind ``backend`` and compare the best ``k``
    with the secrets of ``result`` (the same images, family, mode and floor statistic).

    ``match_classes`` (targeted families): audit only keys whose target class is one of the
    secrets' (:func:`audit_triggers`), as a claimant who chose images fragile toward a class
    would select; else the first ``n_keys`` keys of the seed.

    Raises:
        VerificationError: ``n_keys`` smaller than the number of secrets.
    """
    k = len(spec.secrets)
    if not isinstance(n_keys, int) or isinstance(n_keys, bool) or n_keys < k:
        raise VerificationError(f"the forgery audit needs at least {k} keys, got {n_keys!r}")
    start, queries0 = time.perf_counter(), backend.query_count
    seed = audit_seed(result.null_seed)
    triggers = audit_triggers(spec, seed, n_keys, match_classes=match_classes)
    n = result.n_images
    x = torch.from_numpy(np.asarray(spec.images)[:n]).float().div(255.0)
    y = torch.from_numpy(np.asarray(spec.labels)[:n])
    outcome = query_triggers(backend, x, y, triggers, batch_size=batch_size,
                             labels_only=result.mode == "labels")  # fmt: skip
    g = outcome.contributions.mean(axis=1)
    best = np.sort(g)[::-1][:k]
    secrets_value = floor_value(result.config, np.asarray(result.secret_stats))
    audit_value = floor_value(result.config, best)
    return ForgeryAudit(
        n_keys=n_keys,
        n_secrets=k,
        floor_statistic=result.config.floor_statistic,
        secrets_value=secrets_value,
        audit_value=audit_value,
        keys_reaching=int((g >= secrets_value).sum()),
        audit_max=float(g.max()),
        audit_q99=float(np.quantile(g, 0.99)),
        forgeable=bool(audit_value >= secrets_value),
        queries=backend.query_count - queries0,
        seed=seed.hex(),
        match_classes=match_classes,
        wall_time_s=time.perf_counter() - start,
        key_stats=g,
    )


def audit_triggers(
    spec: WatermarkSpec, seed: bytes, n_keys: int, *, match_classes: bool
) -> list[Trigger]:
    """The audit's triggers: keys ``0, 1, ...`` of ``null_secrets(seed, .)`` in order, all of them
    or (``match_classes``, a targeted family) only those whose target class is one of the
    secrets', until ``n_keys`` are kept."""
    family = get_trigger_family(spec.family)
    wanted = None
    if match_classes:
        targets = {family.derive(s, params=spec.family_params).details.get("target")
                   for s in spec.secrets}  # fmt: skip
        wanted = None if None in targets else targets
    kept: list[Trigger] = []
    derived, chunk = 0, n_keys
    while len(kept) < n_keys:
        keys = null_secrets(seed, derived + chunk)[derived:]
        for key in keys:
            trigger = family.derive(key, params=spec.family_params)
            if wanted is None or trigger.details.get("target") in wanted:
                kept.append(trigger)
                if len(kept) == n_keys:
                    break
        derived += chunk
        chunk = 4 * chunk
    return kept


def check_audit(result: Mapping[str, Any]) -> str:
    """A result document's forgery audit is consistent with itself, its null seed, its time order
    and its verdict (for ``mapguard check``); a note for the check's line, or ``""``.

    Raises:
        VerificationError: Naming the first inconsistency.
    """
    audit = result.get("forgery_audit")
    if audit is None:
        return ""
    established = bool((result.get("time_order") or {}).get("established"))
    if audit["counted"] == established:
        raise VerificationError("the forgery audit was counted against its condition (time order)")
    if audit["forgeable"] != (audit["audit_value"] >= audit["secrets_value"]):
        raise VerificationError("the forgery audit's finding does not follow from its values")
    if audit["seed"] != audit_seed(str(result["test"]["null_seed"])).hex():
        raise VerificationError("the forgery audit's keys are not the claim's audit keys")
    if audit_veto(audit) and result["verdict"] == "evidenced":
        raise VerificationError("the verdict is evidenced although the counted audit vetoes it")
    finding = "forgeable" if audit["forgeable"] else "passes"
    return f"; forgery audit ({audit['n_keys']:,} keys) {finding}"
