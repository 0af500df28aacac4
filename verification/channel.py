"""The committed second channel and the combined verdict (analysis version 4; issue 15).

:func:`verify_channel` queries a suspect on the committed boundary images and ranks the revealed
channel secret's pair-preference statistic among ``M_c`` null keys drawn from the claim's null
seed (under their own domain, :func:`channel_null_keys`); :func:`combine` makes the one verdict
the analysis fixed: Bonferroni over the trigger test and the channel, the channel counted only
when the time order is established (see :mod:`protocols.channel_analysis` for why).

Query-set digest (``query_set_sha256`` of the channel block)::

    SHA256( b"mapguard/channel-query-set/v1\\x00" || for natural, boundary: u32be(n) u32be(3)
            u32be(H) u32be(W) || uint8 pixels, C order || pairs as int64 little-endian [n_c, 2] )

Example:
    >>> import numpy as np
    >>> keys = channel_null_keys("ab" * 32, 3)
    >>> len(keys), len(set(keys)), all(len(k) == 32 for k in keys)
    (3, 3, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from protocols.analysis import Analysis
from protocols.channel_analysis import ChannelAnalysis
from protocols.commitments import open_commitment
from protocols.errors import InputError
from verification._backends.base import QueryBackend
from verification._errors import SuspectError, VerificationError
from verification._inline import images_from_inline, inline_images
from verification._jsonsafe import jsonsafe
from verification._stats.rank import rank_test
from verification._tilt.preference import PairPreferenceFamily
from verification._tilt.test import TiltQueries, channel_statistics
from verification._triggers.keys import null_secrets
from verification._triggers.validation import check_secret
from verification._verify.result import VerificationResult
from verification._verify.run import floor_value
from verification.forgery import audit_veto
from verification.watermark_file import WatermarkFile

__all__ = [
    "ChannelResult",
    "ChannelSpec",
    "Verdict",
    "channel_null_keys",
    "channel_spec",
    "check_combined",
    "combine",
    "encode_channel",
    "query_set_digest",
    "verify_channel",
]

_SET_TAG = b"mapguard/channel-query-set/v1\x00"
_NULL_TAG = b"mapguard/channel-null-seed/v1\x00"
_LOG_FLOOR = 1e-30


def query_set_digest(natural: np.ndarray, boundary: np.ndarray, pairs: np.ndarray) -> str:
    """Hex SHA-256 of a committed channel query set (layout in the module docstring)."""
    h = hashlib.sha256(_SET_TAG)
    for images in (natural, boundary):
        x = np.ascontiguousarray(images, dtype=np.uint8)
        for dim in x.shape:
            h.update(int(dim).to_bytes(4, "big"))
        h.update(x.tobytes())
    h.update(np.ascontiguousarray(pairs, dtype="<i8").tobytes())
    return h.hexdigest()


def channel_null_keys(null_seed: str, m: int) -> list[bytes]:
    """The channel's ``m`` null keys: ``null_secrets`` of ``SHA256(tag || null_seed)``, so they
    are iid draws like the secret and never the trigger test's null keys."""
    seed = hashlib.sha256(_NULL_TAG + null_seed.encode("utf-8")).digest()
    return null_secrets(seed, m)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ChannelSpec:
    """The revealed channel: the committed block, the secret (and its opening nonce) and the
    committed query set, checked against the block's digests on construction.

    Raises:
        VerificationError: The secret or the query set does not open the commitment, or the
            arrays are malformed.
    """

    analysis: ChannelAnalysis
    num_classes: int
    secret: bytes
    secret_nonce: str
    queries: TiltQueries

    def __post_init__(self) -> None:
        _spec_iv(self)

    @property
    def family(self) -> PairPreferenceFamily:
        return PairPreferenceFamily(num_classes=self.num_classes, **self.analysis.family_params)


def _spec_iv(spec: ChannelSpec) -> None:
    a, q = spec.analysis, spec.queries
    check_secret(spec.secret)
    try:
        opened = open_commitment(a.secret_commitment, spec.secret, spec.secret_nonce)
    except InputError as exc:
        raise VerificationError(f"the channel secret's opening is malformed: {exc}") from None
    if not opened:
        raise VerificationError("the channel secret does not open the committed digest")
    for name in ("natural", "boundary"):
        x = np.asarray(getattr(q, name))
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != 3 or x.shape[0] == 0:
            raise VerificationError(f"channel {name} images must be uint8 [n, 3, H, W]")
    pairs = np.asarray(q.pairs)
    n = q.boundary.shape[0]
    if n != a.queries or pairs.shape != (n, 2) or not np.issubdtype(pairs.dtype, np.integer):
        raise VerificationError(
            f"the channel commits {a.queries} boundary images with a pair each; got "
            f"{n} images and pairs of shape {list(pairs.shape)}"
        )
    if pairs.min() < 0 or pairs.max() >= spec.num_classes or (pairs[:, 0] == pairs[:, 1]).any():
        raise VerificationError("channel pairs must be two different classes of the model")
    if query_set_digest(q.natural, q.boundary, pairs) != a.query_set_sha256:
        raise VerificationError("the channel's query set does not match its committed digest")


def encode_channel(spec: ChannelSpec) -> dict[str, Any]:
    """The watermark file's ``channel`` object (private: it holds the secret and its nonce)."""
    q = spec.queries
    return {
        "secret": spec.secret.hex(),
        "nonce": spec.secret_nonce,
        "natural": inline_images(q.natural),
        "boundary": inline_images(q.boundary),
        "pairs": [[int(a), int(b)] for a, b in np.asarray(q.pairs)],
    }


def channel_spec(wm: WatermarkFile) -> ChannelSpec | None:
    """The revealed channel of ``wm`` (None when its analysis has no channel).

    Raises:
        VerificationError: The file's channel is missing, malformed, or does not open the
            committed digests.
    """
    block = wm.analysis.channel
    if block is None:
        return None
    doc = wm.document.get("channel")
    if not isinstance(doc, Mapping):
        raise VerificationError("the analysis commits a channel the watermark file does not hold")
    try:
        secret = bytes.fromhex(doc["secret"])
        pairs = np.asarray([list(p) for p in doc["pairs"]], dtype=np.int64).reshape(-1, 2)
        nonce = str(doc["nonce"])
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"the watermark file's channel is malformed: {exc}") from None
    queries = TiltQueries(images_from_inline(doc.get("natural"), "channel natural images"),
                          images_from_inline(doc.get("boundary"), "channel boundary images"),
                          pairs)  # fmt: skip
    return ChannelSpec(analysis=block, num_classes=wm.num_classes, secret=secret,
                       secret_nonce=nonce, queries=queries)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ChannelResult:
    """The channel test on one suspect.

    Attributes:
        mode: ``"labels"`` or ``"probabilities"`` (the trigger test's mode).
        statistic: The secret's statistic; ``null_mean``/``null_sd``: of the null keys';
            ``z``: ``(statistic - null_mean) / null_sd`` (descriptive).
        rank, null_keys, pvalue: The exact rank test (ties conservative), before Bonferroni.
        admissible: Whether the p-value counts (the time order is established).
        admissibility: The sentence saying why or why not.
    """

    mode: str
    statistic: float
    null_mean: float
    null_sd: float
    z: float
    rank: int
    null_keys: int
    pvalue: float
    admissible: bool
    admissibility: str
    queries: int
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return jsonsafe(self)


def _answers(backend: QueryBackend, images: np.ndarray, labels_only: bool, batch: int) -> dict:
    x = torch.from_numpy(images).float().div(255.0)
    outs = [backend.query(x[i : i + batch]) for i in range(0, len(x), batch)]
    out = torch.cat(outs)
    if out.dim() == 1:
        return {"labels": out.numpy(), "logprobs": None}
    labels = out.argmax(dim=1).numpy()
    if labels_only:
        return {"labels": labels, "logprobs": None}
    logp = torch.log(out.double().clamp_min(_LOG_FLOOR)).numpy()
    return {"labels": labels, "logprobs": logp}


def verify_channel(
    backend: QueryBackend,
    spec: ChannelSpec,
    *,
    null_seed: str,
    labels_only: bool,
    time_order: tuple[bool, str],
    batch_size: int = 256,
) -> ChannelResult:
    """Query the committed boundary images once and rank the secret among the null keys.

    H0: the suspect was made without the channel secret. The secret and the null keys are iid
    32-byte strings and each key's statistic is the same function of the key, the committed
    query set and the suspect's answers, so the secret's rank is uniform and the p-value exact.

    Args:
        null_seed: The claim's null seed (``protocols.analysis.claim_null_seed``).
        labels_only: Use top-1 labels only (the trigger test's mode); a suspect that answers
            labels is tested in labels mode whatever this says.
        time_order: ``(established, sentence)`` of ``verification.timestamps.time_order``.
    """
    start, q0 = time.perf_counter(), backend.query_count
    want = tuple(spec.queries.boundary.shape[1:])
    if tuple(backend.input_shape) != want:
        raise SuspectError(
            f"the suspect takes {list(backend.input_shape)} inputs, the channel's images are "
            f"{list(want)}"
        )
    answers = _answers(backend, spec.queries.boundary, labels_only, batch_size)
    keys = [spec.secret, *channel_null_keys(null_seed, spec.analysis.null_keys)]
    stats = channel_statistics(spec.family, keys, spec.queries, {"s": answers})["s"]
    mode = "labels" if answers["logprobs"] is None else "probabilities"
    g = stats["labels" if mode == "labels" else "probs"]
    null = g[1:]
    test = rank_test(g[0], null)  # exact, ties counted against the secret
    sd = float(null.std())
    established, sentence = time_order
    return ChannelResult(
        mode=mode, statistic=float(g[0]), null_mean=float(null.mean()), null_sd=sd,
        z=float((g[0] - null.mean()) / sd) if sd > 0 else 0.0, rank=test.rank,
        null_keys=int(null.size), pvalue=test.pvalue, admissible=bool(established),
        admissibility=sentence, queries=backend.query_count - q0,
        wall_time_s=time.perf_counter() - start,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The committed analysis's one verdict over both channels.

    Attributes:
        evidenced: A channel rejected at ``alpha / channels`` (the trigger one with its floor).
        pvalue: ``min(1, channels * min(p_trigger, p_channel))`` (attempt factor included;
            an inadmissible channel's p taken as 1).
        by: The channels that rejected, e.g. ``("channel",)``.
    """

    evidenced: bool
    pvalue: float
    alpha: float
    channels: int
    by: tuple[str, ...]
    trigger_pvalue: float
    channel_pvalue: float | None
    channel_admissible: bool

    def to_dict(self) -> dict[str, Any]:
        return jsonsafe(self)


def combine(
    analysis: Analysis, trigger: VerificationResult, channel: ChannelResult | None
) -> Verdict:
    """The verdict of ``analysis`` from the trigger result and the channel result.

    Raises:
        VerificationError: The channel result is missing for a version-4 analysis, or given for
            one without a channel.
    """
    if (analysis.channel is None) != (channel is None):
        raise VerificationError(
            "the channel result must be given exactly when the analysis has one"
        )
    h, cfg = analysis.channels, trigger.config
    floor_ok = floor_value(cfg, np.asarray(trigger.secret_stats)) >= cfg.effect_floor
    p_trig = trigger.pvalue  # already times the attempt
    by = ("trigger",) if h * p_trig <= analysis.alpha and floor_ok else ()
    p_chan = None
    admissible = False
    if channel is not None:
        p_chan = min(1.0, analysis.attempt * channel.pvalue)
        admissible = channel.admissible
        if admissible and h * p_chan <= analysis.alpha:
            by += ("channel",)
    counted = [p_trig] + ([p_chan] if admissible and p_chan is not None else [])
    return Verdict(
        evidenced=bool(by), pvalue=min(1.0, h * min(counted)), alpha=analysis.alpha, channels=h,
        by=by, trigger_pvalue=p_trig, channel_pvalue=p_chan, channel_admissible=admissible,
    )  # fmt: skip


def check_combined(result: Mapping[str, Any], analysis: Analysis) -> str:
    """``mapguard check``'s test of a result predicate's combined verdict against the committed
    ``analysis``: a version-4 result records its channel, counts it exactly when its time order
    is established, and its p-value and verdict follow from the recorded p-values.

    Raises:
        VerificationError: Naming the first inconsistency.
    """
    if analysis.channel is None:
        if "channel" in result or "combined" in result:
            raise VerificationError("the result records a channel the analysis does not commit")
        return ""
    chan, comb = result.get("channel"), result.get("combined")
    if not isinstance(chan, Mapping) or not isinstance(comb, Mapping):
        raise VerificationError("the committed channel's result or the combined verdict is missing")
    established = bool((result.get("time_order") or {}).get("established"))
    if chan["admissible"] != established or chan["null_keys"] != analysis.channel.null_keys:
        raise VerificationError("the channel was counted against its committed condition or size")
    p_chan = min(1.0, analysis.attempt * chan["pvalue"])
    counted = [result["test"]["pvalue"]] + ([p_chan] if established else [])
    want = min(1.0, analysis.channels * min(counted))
    if abs(comb["pvalue"] - want) > 1e-12 * max(1.0, want) or comb["alpha"] != analysis.alpha:
        raise VerificationError(f"the combined p-value {comb['pvalue']} is not {want}")
    if (result["verdict"] == "evidenced") != (
        bool(comb["evidenced"]) and not audit_veto(result.get("forgery_audit"))
    ):
        raise VerificationError("the verdict is not the combined one")
    if comb["evidenced"] and want > analysis.alpha:
        raise VerificationError("the combined verdict is evidenced above alpha")
    return f"; channel p {chan['pvalue']:.3g}, {'counted' if established else 'not counted'}"
