"""NTL baseline: Non-Transferable Learning (Wang et al., ICLR 2022), target-specified variant.

Fine-tunes *all* weights of a trained model with the published objective

    L = KL_src - min(1, alpha * KL_tgt) * min(1, beta * MMD(f_src, f_tgt))

where ``KL_src`` / ``KL_tgt`` are the KL divergences between the one-hot labels and the model's
predictions (= cross-entropy) on source and target batches, ``MMD`` is the multi-bandwidth Gaussian
maximum mean discrepancy between penultimate-layer features of the two batches, and
``alpha = beta = 0.1``, Adam with ``lr = 1e-4`` as in the paper. It is the baseline MAP is compared
with (same source model, data and epoch budget); registered as protection method ``"ntl"``.

Reference: L. Wang, S. Xu, R. Xu, X. Wang, Q. Zhu. "Non-Transferable Learning: A New Approach for
Model Ownership Verification and Applicability Authorization". ICLR 2022.

Example:
    >>> import torch
    >>> x, y = torch.rand(8, 4), torch.rand(8, 4)
    >>> float(mmd(x, x)) == 0.0
    True
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, Dataset, TensorDataset

from mapguard._config import ConfigMixin, check_int, check_number
from mapguard._device import default_device
from mapguard._errors import ConfigError, ModelFileError, TrainingError
from mapguard._progress import progress_bar
from mapguard.masking import BatchSource, TensorSource
from mapguard.methods._registry import MethodInputs, MethodOutput, register_method
from mapguard.methods.map import batch_source

__all__ = [
    "NTLConfig",
    "NTLResult",
    "batch_to",
    "cycle_batches",
    "mmd",
    "ntl_finetune",
    "protect_ntl",
]


@dataclass(frozen=True, kw_only=True)
class NTLConfig(ConfigMixin, what="NTL"):
    """Options of :func:`ntl_finetune` (paper defaults)."""

    epochs: int = 4
    lr: float = 1e-4
    batch_size: int = 64
    alpha: float = 0.1
    beta: float = 0.1
    max_steps_per_epoch: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=2)
        for name in ("lr", "alpha", "beta"):
            check_number(name, getattr(self, name), positive=True)
        if self.max_steps_per_epoch is not None:
            check_int("max_steps_per_epoch", self.max_steps_per_epoch, low=1)


@dataclass(frozen=True, kw_only=True, eq=False)
class NTLResult:
    """The fine-tuned model and how it was obtained."""

    model: nn.Module
    config: NTLConfig
    history: tuple[dict[str, float], ...]
    steps: int
    seconds: float
    images: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def mmd(
    x: torch.Tensor, y: torch.Tensor, *, kernel_mul: float = 2.0, kernel_num: int = 5
) -> torch.Tensor:
    """Biased MMD^2 estimate with a sum of ``kernel_num`` Gaussian kernels (DAN-style bandwidths).

    The base bandwidth is the mean pairwise squared distance of the pooled sample; the kernels use
    it times ``kernel_mul ** (i - kernel_num // 2)``, as in the NTL reference implementation.
    """
    x, y = x.flatten(1).float(), y.flatten(1).float()
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).pow(2)
    n = z.shape[0]
    bandwidth = d2.detach().sum() / max(1, n * n - n)
    if bandwidth <= 0:
        return torch.zeros((), device=z.device)
    base = bandwidth / kernel_mul ** (kernel_num // 2)
    k = sum(torch.exp(-d2 / (base * kernel_mul**i)) for i in range(kernel_num))
    nx = x.shape[0]
    return k[:nx, :nx].mean() + k[nx:, nx:].mean() - 2 * k[:nx, nx:].mean()


class _Penultimate:
    """Records the input of the model's last ``nn.Linear`` (the penultimate features)."""

    def __init__(self, model: nn.Module) -> None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ModelFileError("NTL needs a model whose last layer is nn.Linear")
        self.features: torch.Tensor | None = None
        self.handle = linears[-1].register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.features = args[0]


def _ntl_loss(
    model: nn.Module, hook: _Penultimate, src, tgt, cfg: NTLConfig
) -> tuple[torch.Tensor, dict[str, float]]:  # noqa: ANN001
    out_s = model(src.x)
    feat_s = hook.features
    out_t = model(tgt.x)
    feat_t = hook.features
    kl_src = F.cross_entropy(out_s, src.y)
    kl_tgt = F.cross_entropy(out_t, tgt.y)
    dist = mmd(feat_s, feat_t)
    loss = kl_src - (cfg.alpha * kl_tgt).clamp(max=1) * (cfg.beta * dist).clamp(max=1)
    values = {"kl_src": kl_src, "kl_tgt": kl_tgt, "mmd": dist, "loss": loss}
    return loss, {k: float(v.detach()) for k, v in values.items()}


def ntl_finetune(
    model: nn.Module,
    *,
    source: BatchSource | Sequence[BatchSource],
    target: BatchSource | Sequence[BatchSource],
    config: NTLConfig | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> NTLResult:
    """Fine-tune a copy of ``model`` with the NTL objective (``model`` itself is not modified).

    Args:
        model: trained classifier.
        source: labelled source data (several sources are all kept: e.g. extra authorized domains),
            :class:`TensorSource` or :class:`~mapguard.data.DatasetSource` (streamed); the
            sources are pooled and reshuffled from ``config.seed``.
        target: labelled unauthorized target data (several are pooled, from ``config.seed + 1``).
        config: options (paper defaults).
        device: torch device.
        progress: show a progress bar.
    """
    cfg = config or NTLConfig()
    srcs = [source] if isinstance(source, BatchSource) else list(source)
    tgts = [target] if isinstance(target, BatchSource) else list(target)
    if any(s.y is None for s in srcs + tgts):
        raise ConfigError("NTL needs labelled source and target data")
    dev = default_device(str(device) if device else None)
    net = copy.deepcopy(model).to(dev).train()
    net.requires_grad_(True)
    hook = _Penultimate(net)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    src, tgt = _pool(srcs, seed=cfg.seed), _pool(tgts, seed=cfg.seed + 1)
    steps = min(src.steps_per_epoch(cfg.batch_size), cfg.max_steps_per_epoch or 1 << 30)
    history, images, t0 = [], 0, time.perf_counter()
    try:
        with progress_bar("NTL fine-tuning", total=cfg.epochs * steps, enabled=progress) as bar:
            for epoch in range(cfg.epochs):
                sums: dict[str, float] = {}
                pairs = zip(
                    src.batches(epoch=epoch, batch_size=cfg.batch_size),
                    cycle_batches(tgt, cfg.batch_size, epoch),
                )
                for i, (bs, bt) in enumerate(pairs):
                    if i >= steps:
                        break
                    bs, bt = batch_to(bs, dev), batch_to(bt, dev)
                    loss, vals = _ntl_loss(net, hook, bs, bt, cfg)
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"NTL loss became NaN/inf at epoch {epoch + 1}; lower --lr"
                        )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    images += bs.x.shape[0] + bt.x.shape[0]
                    sums = {k: sums.get(k, 0.0) + v for k, v in vals.items()}
                    bar.advance()
                history.append({k: v / steps for k, v in sums.items()} | {"epoch": epoch + 1})
    finally:
        hook.handle.remove()
    seconds = time.perf_counter() - t0
    return NTLResult(
        model=net.eval(),
        config=cfg,
        history=tuple(history),
        steps=cfg.epochs * steps,
        seconds=seconds,
        images=images,
    )


def _pool(sources: Sequence[BatchSource], *, seed: int) -> BatchSource:
    """One labelled source of all ``sources``: tensors concatenated when every one is held in
    memory (the pooled order of every earlier release), else one streamed ConcatDataset."""
    if all(isinstance(s, TensorSource) for s in sources):
        x, y = torch.cat([s.x for s in sources]), torch.cat([s.y for s in sources])
        return TensorSource(x, y, seed=seed)
    from mapguard.data import DatasetSource

    parts: list[Dataset] = []
    for s in sources:
        if isinstance(s, TensorSource):
            parts.append(TensorDataset(s.x, s.y))
        elif isinstance(s, DatasetSource):
            parts.append(s.dataset)
        else:
            raise ConfigError(f"NTL takes TensorSource or DatasetSource data, got {s!r}")
    workers = max((getattr(s, "workers", 0) for s in sources), default=0)
    pooled = _Pooled(parts, labels=torch.cat([s.y for s in sources]))
    return DatasetSource(pooled, seed=seed, name="+".join(s.name for s in sources), workers=workers)


class _Pooled(ConcatDataset):
    """A ConcatDataset that carries its ``labels`` (what a labelled DatasetSource reports)."""

    def __init__(self, parts: Sequence[Dataset], *, labels: torch.Tensor) -> None:
        super().__init__(parts)
        self.labels = labels


def cycle_batches(src: BatchSource, batch_size: int, epoch: int):  # noqa: ANN202
    """Endless batches of ``src`` (NTL's and nft-weights' target side), epochs from ``epoch``."""
    k = epoch * 1000
    while True:
        yield from src.batches(epoch=k, batch_size=batch_size)
        k += 1


def batch_to(batch, dev: torch.device):  # noqa: ANN001, ANN202
    """A labelled batch on ``dev``."""
    return type(batch)(batch.x.to(dev), batch.y.to(dev), None)


@register_method(
    "ntl",
    description="NTL baseline: fine-tune all weights (Wang et al. 2022)",
    learns_mask=False,
    validate=lambda options, seed: NTLConfig.from_dict({"seed": seed, **options}),
    streams=True,
)
def protect_ntl(inputs: MethodInputs) -> MethodOutput:
    """Fine-tune every weight with the NTL objective (source + keep kept, targets degraded)."""
    cfg = NTLConfig.from_dict({"seed": inputs.seed, **inputs.options})
    result = ntl_finetune(
        inputs.model,
        source=[
            batch_source(d, seed=0, workers=inputs.workers) for d in (inputs.source, *inputs.keep)
        ],
        target=[batch_source(d, seed=0, workers=inputs.workers) for d in inputs.targets],
        config=cfg,
        device=inputs.device,
        progress=inputs.progress,
    )
    return MethodOutput(
        model=result.model,
        config=cfg.to_dict(),
        seconds=result.seconds,
        images_per_second=result.images_per_second,
        info={"history": list(result.history)},
    )
