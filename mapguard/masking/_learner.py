"""The mask learner: optimise mask scores over a frozen model (single process or DDP)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mapguard._device import amp_enabled, autocast, default_device, fast_layout, mixed_precision
from mapguard._errors import ConfigError, TrainingError
from mapguard._progress import progress_bar
from mapguard.checkpoint import weights_digest
from mapguard.masking._config import MaskConfig
from mapguard.masking._distributed import DistInfo, device_for, dist_info
from mapguard.masking._mask import Mask, MaskLayer, apply_mask
from mapguard.masking._objectives import BNRecorder, ObjectiveTerm, StepView, default_terms
from mapguard.masking._optim import make_optimizer
from mapguard.masking._parametrize import MaskedModel, MaskScores, maskable_weights
from mapguard.masking._sources import Batch, BatchSource

__all__ = ["EpochInfo", "MaskResult", "learn_mask"]


@dataclass(frozen=True, kw_only=True, eq=False)
class EpochInfo:
    """What a callback sees after each epoch; return ``True`` from the callback to stop.

    Attributes:
        epoch: The epoch just finished (1-based).
        steps: Optimisation steps per epoch.
        terms: Mean value of every objective term over the epoch, by term name.
        pruned_fraction: Fraction of the masked weights the mask removes now.
        scores: The live mask scores.
        current_mask: Builds the binary mask the scores give now.
    """

    epoch: int
    steps: int
    terms: dict[str, float]
    pruned_fraction: float
    scores: MaskScores
    current_mask: Callable[[], Mask]


@dataclass(frozen=True, kw_only=True, eq=False)
class MaskResult:
    """A learned mask and how it was obtained."""

    mask: Mask
    config: MaskConfig
    history: tuple[dict[str, float], ...]
    steps: int
    seconds: float
    images: int
    world_size: int = 1
    buffers: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def pruned_fraction(self) -> float:
        return self.mask.pruned_fraction

    @property
    def images_per_second(self) -> float:
        """Images through the masked model per second (all processes)."""
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def apply(self, model: nn.Module) -> nn.Module:
        """The protected plain model: ``model`` with the mask (and BN statistics) baked in."""
        return apply_mask(model, self.mask, buffers=self.buffers)


def _as_tuple(sources: BatchSource | Sequence[BatchSource], what: str) -> tuple[BatchSource, ...]:
    out = (sources,) if isinstance(sources, BatchSource) else tuple(sources)
    if not out or not all(isinstance(s, BatchSource) for s in out):
        raise ConfigError(f"{what} must be one or more BatchSource objects, got {sources!r}")
    return out


def _endless(src: BatchSource, batch_size: int, info: DistInfo) -> Iterator[Batch]:
    epoch = 0
    while True:
        empty = True
        for batch in src.batches(
            epoch=epoch, batch_size=batch_size, rank=info.rank, world_size=info.world_size
        ):
            empty = False
            yield batch
        if empty:
            raise ConfigError(f"source '{src.name}' yields no batches")
        epoch += 1


class _Run:
    """State of one learning run (kept out of :func:`learn_mask` to keep functions short)."""

    def __init__(
        self,
        model: nn.Module,
        cfg: MaskConfig,
        terms: list[ObjectiveTerm],
        device: torch.device,
        info: DistInfo,
    ) -> None:
        self.cfg, self.terms, self.device, self.info = cfg, terms, device, info
        names = maskable_weights(model, exclude=cfg.exclude)
        params = dict(model.named_parameters())
        shapes = {n: tuple(params[n].shape) for n in names}
        self.scores = MaskScores(
            shapes, granularity=cfg.granularity, init=cfg.init_score, threshold=cfg.threshold
        ).to(device)
        # the caller's model is used in place only when nothing about it changes (--amp on CUDA
        # puts a copy in channels-last)
        on_device = next(model.parameters()).device == device and not amp_enabled()
        teacher = model if on_device else copy.deepcopy(model).to(device)
        self.teacher = fast_layout(teacher, device).eval()
        self.masked = MaskedModel(
            self.teacher,
            self.scores,
            update_bn=cfg.update_bn,
            weight_noise=cfg.weight_noise,
            seed=cfg.seed + 7919 * info.rank,
        ).train()
        self.net: nn.Module = self.masked
        if info.active:
            ids = [device.index] if device.type == "cuda" else None
            self.net = DistributedDataParallel(self.masked, device_ids=ids, broadcast_buffers=False)
        for term in terms:  # a term that simulates an adversary needs the masked model itself
            if hasattr(term, "bind"):
                term.bind(self.masked)
        self.bn = BNRecorder(self.masked.original) if any(t.name == "bn" for t in terms) else None
        self.opt = make_optimizer(cfg.optimizer, self.scores.parameters(), cfg.lr)

    @torch.no_grad()
    def teach(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device):
            return self.teacher(fast_layout(x.to(self.device), self.device)).float()

    def step(
        self, keeps: list[Batch], degrades: list[Batch], extras: list[Batch], epoch: int, step: int
    ) -> dict[str, float]:
        """One optimisation step; returns the value of every term (and the total ``loss``)."""
        view = self._view(keeps, degrades, extras, epoch, step)
        values = {t.name: t.value(view) for t in self.terms if t.weight != 0}
        loss = sum(t.weight * values[t.name] for t in self.terms if t.weight != 0)
        if not self.info.active and not torch.isfinite(loss):
            raise TrainingError(
                f"mask loss became NaN/inf at epoch {epoch + 1}, step {step + 1}; lower --lr"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self._check_grads(epoch, step)
        self.opt.step()
        return {k: float(v.detach()) for k, v in values.items()} | {"loss": float(loss.detach())}

    def _view(
        self, keeps: list[Batch], degrades: list[Batch], extras: list[Batch], epoch: int, step: int
    ) -> StepView:
        """All batches through the masked model in one forward pass, split back per role."""
        parts = [b.x for b in keeps + degrades + extras]
        sizes = [p.shape[0] for p in parts]
        if self.bn is not None:
            self.bn.start(sum(sizes[: len(keeps)]))
        with autocast(self.device):  # bf16 under --amp (CUDA); float32 otherwise
            x = fast_layout(torch.cat(parts).to(self.device, non_blocking=True), self.device)
            logits = self.net(x).float()
        chunks = list(torch.split(logits, sizes))
        k, d = len(keeps), len(degrades)
        teacher = [
            b.teacher.to(self.device) if b.teacher is not None else self.teach(b.x) for b in keeps
        ]
        extra_terms = [t for t in self.terms if t.source is not None]
        return StepView(
            keep_logits=torch.cat(chunks[:k]),
            teacher_logits=torch.cat(teacher),
            degrade_logits=torch.cat(chunks[k : k + d]),
            degrade_labels=torch.cat([self._labels(b) for b in degrades]),
            pruned_fraction=self.scores.pruned_fraction(),
            bn_stats=tuple(self.bn.stats) if self.bn is not None else (),
            extra={t.name: (c, b) for t, c, b in zip(extra_terms, chunks[k + d :], extras)},
            epoch=epoch,
            step=step,
        )

    def _labels(self, batch: Batch) -> torch.Tensor:
        if batch.y is not None:
            return batch.y.to(self.device)
        logits = batch.teacher.to(self.device) if batch.teacher is not None else self.teach(batch.x)
        return logits.argmax(1)

    def _check_grads(self, epoch: int, step: int) -> None:
        for p in self.scores.parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise TrainingError(
                    f"mask gradient became NaN/inf at epoch {epoch + 1}, "
                    f"step {step + 1}; lower --lr"
                )

    def current_mask(self, digest: str) -> Mask:
        bits = self.scores.binary()
        layers = tuple(
            MaskLayer(name=n, weight_shape=self.scores.weight_shapes[n], bits=bits[n])
            for n in self.scores.names
        )
        return Mask(granularity=self.cfg.granularity, layers=layers, weights_sha256=digest)


def _prepare(
    sources: tuple[BatchSource, ...], run: _Run, *, labels_only: bool
) -> list[BatchSource]:
    """Attach cached teacher logits where the source supports it (and they are needed)."""
    if not run.cfg.cache_teacher:
        return list(sources)
    out = []
    for src in sources:
        needs = not labels_only or getattr(src, "y", 0) is None
        out.append(src.with_teacher(run.teach) if needs else src)
    return out


def learn_mask(
    model: nn.Module,
    *,
    keep: BatchSource | Sequence[BatchSource],
    degrade: BatchSource | Sequence[BatchSource],
    config: MaskConfig | None = None,
    extra_terms: Sequence[ObjectiveTerm] = (),
    callbacks: Sequence[Callable[[EpochInfo], bool | None]] = (),
    device: str | torch.device | None = None,
    progress: bool = True,
    amp: bool = False,
) -> MaskResult:
    """Learn a binary mask over ``model``'s Conv/Linear/attention weights (model unmodified).

    Minimises ``keep_weight * KL(original || masked)`` on the keep batches
    ``- degrade_weight * mean(min(CE, cap))`` on the degrade batches ``+ prune_weight * pruned``
    (``+ bn_weight * BN-statistics distance``) ``+ sum(extra terms)``. Under ``torchrun`` (an
    initialised process group) the scores are trained with DistributedDataParallel, each process
    taking its slice of every global batch.
    Inside :func:`mapguard._device.mixed_precision` (``--amp``, CUDA) the forward passes run
    under bf16 autocast with channels-last batches, on a copy of ``model``; logits and every term
    stay float32, and so do the scores.

    Args:
        model: the trained original classifier (frozen; weights stay bit-identical).
        keep: source(s) whose behaviour is preserved (labels not needed). The first one defines
            an epoch; several are drawn in parallel, one batch each per step.
        degrade: source(s) on which the model must fail; labels are the true labels when the
            source has them, else the original model's predictions.
        config: options (defaults: :class:`MaskConfig`).
        extra_terms: further objective terms (e.g. a watermark term with its own source); a
            term with a ``bind(masked)`` method is given the :class:`MaskedModel` before the
            first step (e.g. the simulated thief of ``map-nft``).
        callbacks: called after every epoch with :class:`EpochInfo`; returning ``True`` stops.
        device: torch device (default CUDA when present; each DDP process uses its LOCAL_RANK GPU).
        progress: show a progress bar (rank 0 only).
        amp: run as inside :func:`~mapguard._device.mixed_precision` (CUDA only; refused
            elsewhere).

    Raises:
        ConfigError: bad options or sources (or ``amp`` off CUDA). ModelFileError: no weight
        to mask.
        TrainingError: the loss or gradient became NaN/inf.
    """
    cfg = config or MaskConfig()
    keeps, degrades = _as_tuple(keep, "keep"), _as_tuple(degrade, "degrade")
    info = dist_info()
    digest = weights_digest(model.state_dict())
    dev = device_for(info, default_device(str(device) if device else None))
    with mixed_precision(dev, amp):  # amp=False: the caller's scope, if any, stays
        run = _Run(model, cfg, default_terms(cfg) + list(extra_terms), dev, info)
        t0 = time.perf_counter()  # the time includes caching the teacher's logits
        keeps_p = _prepare(keeps, run, labels_only=False)
        degrades_p = _prepare(degrades, run, labels_only=True)
        steps = _steps_per_epoch(keeps[0], cfg)
        try:
            with progress_bar(
                "learning mask", total=cfg.epochs * steps, enabled=progress and info.is_main
            ) as bar:
                history, images = _fit(run, keeps_p, degrades_p, steps, callbacks, digest, bar)
        finally:
            if run.bn is not None:
                run.bn.close()
        seconds = time.perf_counter() - t0
    buffers = None
    if cfg.update_bn:
        buffers = {n: b.detach().cpu().clone() for n, b in run.masked.original.named_buffers()}
    return MaskResult(
        mask=run.current_mask(digest),
        config=cfg,
        history=tuple(history),
        steps=steps * len(history),
        seconds=seconds,
        images=images,
        world_size=info.world_size,
        buffers=buffers,
    )


def _steps_per_epoch(first_keep: BatchSource, cfg: MaskConfig) -> int:
    full = first_keep.steps_per_epoch(cfg.batch_size)
    if full is None and cfg.max_steps_per_epoch is None:
        raise ConfigError(f"keep source '{first_keep.name}' is endless: set max_steps_per_epoch")
    return min(s for s in (full, cfg.max_steps_per_epoch) if s is not None)


def _fit(run, keeps, degrades, steps, callbacks, digest, bar) -> tuple[list[dict[str, float]], int]:  # noqa: ANN001
    """The epoch loop: one batch from every source per step; callbacks after each epoch."""
    info, cfg = run.info, run.cfg
    iters = [_endless(s, cfg.batch_size, info) for s in (*keeps, *degrades)]
    iters += [_endless(t.source, cfg.batch_size, info) for t in run.terms if t.source is not None]
    k, d = len(keeps), len(degrades)
    history, images = [], 0
    for epoch in range(cfg.epochs):
        sums: dict[str, float] = {}
        for i in range(steps):
            batch = [next(it) for it in iters]
            vals = run.step(batch[:k], batch[k : k + d], batch[k + d :], epoch, i)
            seen = sum(b.x.shape[0] for b in batch) * info.world_size
            images += seen
            sums = {n: sums.get(n, 0.0) + v for n, v in vals.items()}
            bar.advance(images=seen, loss=vals["loss"])
        record = {n: v / steps for n, v in sums.items()}
        record |= {
            "epoch": epoch + 1,
            "pruned_fraction": float(run.scores.pruned_fraction().detach()),
        }
        history.append(record)
        if _stop(callbacks, epoch, steps, record, run, digest):
            break
    return history, images


def _stop(callbacks, epoch, steps, record, run, digest) -> bool:  # noqa: ANN001
    info = EpochInfo(
        epoch=epoch + 1,
        steps=steps,
        terms={k: v for k, v in record.items() if k not in ("epoch", "pruned_fraction")},
        pruned_fraction=record["pruned_fraction"],
        scores=run.scores,
        current_mask=lambda: run.current_mask(digest),
    )
    return any(bool(cb(info)) for cb in callbacks)
