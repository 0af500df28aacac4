"""``protect``: restrict a trained model to its authorized source domain (library side of
``mapguard protect``).

One walk: load the model and the data (train splits for the method, test splits of every domain
for the metrics; folders are streamed from disk, built-in domains held in memory) -> run a
protection method from :mod:`mapguard.methods` -> measure accuracies before and after
(:mod:`mapguard.metrics`) -> write the protected checkpoint, mask, metrics and ``torch.export``
archive (:mod:`mapguard.export`).

Example:
    >>> # protect("model.pt", source="builtin:mnist", targets=["builtin:mnistm"], out="p.pt")
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mapguard import __version__
from mapguard._config import check_int
from mapguard._device import check_amp, default_device, mixed_precision
from mapguard._errors import ConfigError
from mapguard.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from mapguard.export import export_program
from mapguard.masking import (
    LayerSummary,
    Mask,
    device_for,
    finish_distributed,
    init_distributed,
    mask_summary,
    maskable_weights,
    save_mask,
)
from mapguard.methods import MethodInputs, get_method
from mapguard.metrics import ProtectionMetrics, protection_metrics
from mapguard.training import accuracy, check_compatible, input_side
from protocols.fileio import atomic_write_text, check_writable

if TYPE_CHECKING:
    from mapguard.data import FolderDataset, ImageSet

    #: A split as protect reads it: in memory (built-in domains) or streamed (folders).
    Data = ImageSet | FolderDataset

__all__ = ["ProtectReport", "protect"]

METRICS_SCHEMA_VERSION = "1"


@dataclass(frozen=True, kw_only=True, eq=False)
class ProtectReport:
    """Outcome of :func:`protect` (what the metrics JSON holds, plus the protected model)."""

    method: str
    metrics: ProtectionMetrics
    config: Mapping[str, Any]
    seconds: float
    method_seconds: float
    images_per_second: float
    outputs: dict[str, str]
    model: nn.Module = field(repr=False)
    mask: Mask | None = field(default=None, repr=False)
    masked_layers: tuple[LayerSummary, ...] = field(default=(), repr=False)
    info: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the metrics file's content)."""
        return {
            "schema_version": METRICS_SCHEMA_VERSION,
            "kind": "mapguard-protect-metrics",
            "tool": f"mapguard {__version__}",
            "method": self.method,
            "metrics": self.metrics.to_dict(),
            "config": dict(self.config),
            "seconds": self.seconds,
            "method_seconds": self.method_seconds,
            "images_per_second": self.images_per_second,
            "mask_sha256": self.mask.sha256 if self.mask is not None else None,
            "masked_layers": (
                [layer.to_dict() for layer in self.masked_layers] if self.mask is not None else None
            ),
            "outputs": self.outputs,
            "method_info": dict(self.info),
        }


def _check_outputs(
    paths: Mapping[str, str | os.PathLike[str] | None], force: bool
) -> dict[str, Path]:
    chosen = {k: Path(v) for k, v in paths.items() if v is not None}
    seen: dict[Path, str] = {}
    for kind, p in chosen.items():
        key = p.resolve()
        if key in seen:
            raise ConfigError(f"--{seen[key]} and --{kind} both name '{p}'")
        seen[key] = kind
        check_writable(p, force=force)
    return chosen


def _load_sets(
    specs: Sequence[str], split: str, k: int, side: int, progress: bool, stream: bool = True
) -> list[Data]:
    """The ``split`` of every spec: folders streamed unless ``stream`` is False (a method that
    needs its data in memory), built-in domains in memory."""
    from mapguard.data import load_data, load_or_stream

    read = load_or_stream if stream else load_data
    sets = [read(s, split=split, progress=progress, size=side) for s in specs]
    for d in sets:
        check_compatible(k, d, side=side)
    return sets


def _check_roles(
    source: str | None, targets: Sequence[str], keep: Sequence[str], *, need_targets: bool = True
) -> None:
    if not targets and need_targets:
        raise ConfigError("give at least one --target")
    given = (source, *targets, *keep) if source is not None else (*targets, *keep)
    norm = {s: _norm(s) for s in given}
    for t in targets:
        if source is not None and norm[t] == norm[source]:
            raise ConfigError(f"source and target are the same data ('{source}')")
    for k in keep:
        if norm[k] in {norm[t] for t in targets}:
            raise ConfigError(f"'{k}' is given both as --keep and as --target")
        if source is not None and norm[k] == norm[source]:
            raise ConfigError(f"--keep '{k}' is the source already")
    if len({norm[t] for t in targets}) != len(targets):
        raise ConfigError("the same --target is given twice")


def _norm(spec: str) -> str:
    from mapguard.data import parse_data_spec

    parsed = parse_data_spec(spec)
    return str(parsed.path.resolve()) if parsed.path is not None else str(parsed)


def _same_images(a: Data, b: Data, workers: int) -> bool:
    """Whether two splits hold the same pixels; streamed ones are compared a batch at a time
    (stopping at the first difference), after their lengths and labels."""
    from mapguard.data import ImageSet, ImageSetDataset, data_loader

    if isinstance(a, ImageSet) and isinstance(b, ImageSet):
        return a.images.shape == b.images.shape and torch.equal(a.images, b.images)
    if len(a) != len(b) or a.side != b.side or not torch.equal(a.labels, b.labels):
        return False
    loaders = [
        data_loader(
            ImageSetDataset(d) if isinstance(d, ImageSet) else d,
            batch_size=256,
            seed=0,
            workers=workers,
            shuffle=False,
        )  # fmt: skip
        for d in (a, b)
    ]
    return all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(*loaders))


def _other_specs(
    source: str | None, targets: Sequence[str], keep: Sequence[str], classes: Sequence[str]
) -> list[str]:
    """The ``keep`` specs, and the built-in domains not used when the source data has their
    classes (the digits "0".."9": a model of other classes, even ten of them, is measured on its
    own data only, not on digits rendered at its side)."""
    from mapguard.data import DIGIT_CLASSES, list_domains

    used = {_norm(s) for s in (source, *targets) if s is not None}
    domains = list_domains() if tuple(classes) == tuple(DIGIT_CLASSES) else []
    specs = [f"builtin:{d}" for d in domains if f"builtin:{d}" not in used]
    return specs + [k for k in keep if _norm(k) not in {_norm(s) for s in specs}]


def _accuracies(
    model: nn.Module, sets: Mapping[str, Data], device: torch.device, workers: int
) -> dict[str, float]:
    model.to(device).eval()
    return {
        name: accuracy(model, data, device=device, workers=workers) for name, data in sets.items()
    }


def protect(
    model_path: str | os.PathLike[str],
    *,
    source: str | None,
    targets: Sequence[str],
    keep: Sequence[str] = (),
    method: str = "map",
    out: str | os.PathLike[str],
    mask_out: str | os.PathLike[str] | None = None,
    metrics_out: str | os.PathLike[str] | None = None,
    export: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    force: bool = False,
    device: str | None = None,
    progress: bool = True,
    allow_code: bool = False,
    workers: int = 0,
    amp: bool = False,
) -> ProtectReport:
    """Protect the model at ``model_path`` against ``targets`` and write the outputs.

    Accuracies are measured on the *test* splits: source, every target, and every other built-in
    domain with the same classes (plus the ``keep`` domains). Every data set is loaded at the
    model's image side (its checkpoint's ``input_size``). Options are method-specific (for
    ``"map"`` any :class:`~mapguard.masking.MaskConfig` field, e.g. ``{"epochs": 4}``).
    Every output path is checked before any work; outputs are written atomically, only by rank 0
    under ``torchrun``. ``allow_code=True`` rebuilds a checkpoint whose architecture is a
    ``module:pkg.mod:factory`` (runs that code: only for your own model; ``--unsafe-load``).
    Folder data are streamed from disk, decoded by ``workers`` DataLoader processes (the
    accuracies, and the training batches of a method registered with ``streams=True``: ``map``,
    ``ntl``), so memory does not grow with the number of images; results are the same whatever
    ``workers`` is. Built-in domains are held in memory.
    ``amp`` (``--amp``, CUDA only, refused elsewhere): the mask learner runs its forward passes
    under bf16 autocast with channels-last batches (every method that learns a mask; NTL's own
    loop is not changed by it); the accuracies are measured in float32.

    ``source`` may be None only for a method registered with ``needs_source=False`` (``sf-map``,
    ``df-map``): such a method never gets the source's training split; given a source, only its
    test split is read (to measure the drop), and without one the metrics report the method's
    ``estimated_source_drop`` instead of a measured drop.

    Raises:
        ConfigError: bad method/options/roles (e.g. source == target). ModelFileError: bad model or
        class mismatch. DataError: bad data. TrainingError: NaN loss. OutputExistsError.
    """
    t0 = time.perf_counter()
    paths = {"out": out, "mask-out": mask_out, "metrics-out": metrics_out, "export": export}
    chosen = _check_outputs(paths, force)
    meth = get_method(method)
    if mask_out is not None and not meth.learns_mask:
        raise ConfigError(f"method '{method}' learns no mask; drop --mask-out")
    if source is None and meth.needs_source:
        raise ConfigError(f"method '{method}' needs --source (its training data are read)")
    _check_roles(source, targets, keep, need_targets=meth.needs_target)
    check_int("workers", workers, low=0)
    if amp:
        check_amp(default_device(device))  # before any data are read
    options = dict(options or {})
    if meth.validate is not None:
        meth.validate(options, seed)  # bad options fail before any data is loaded
    model, meta = load_checkpoint(model_path, allow_code=allow_code)
    if meth.learns_mask:
        maskable_weights(model, exclude=tuple(options.get("exclude", ())))
    data = _load_all(
        source, targets, keep, meta, progress, stream=meth.streams, workers=workers,
        source_train=meth.needs_source,
    )  # fmt: skip
    info = init_distributed()
    dev = device_for(info, default_device(device))
    before = _accuracies(model, data.tests, dev, workers)
    inputs = MethodInputs(
        model=model, meta=meta, source=data.source, targets=data.targets, keep=data.keep,
        options=options, seed=seed, device=dev, progress=progress, workers=workers,
    )  # fmt: skip
    with mixed_precision(dev, amp):  # --amp: bf16 autocast + channels-last (CUDA only)
        result = meth.run(inputs)
    after = _accuracies(result.model, data.tests, dev, workers)
    report = ProtectReport(
        method=method,
        metrics=_metrics(source, targets, before, after, result, meta.num_classes),
        config=result.config,
        seconds=time.perf_counter() - t0,
        method_seconds=result.seconds,
        images_per_second=result.images_per_second,
        outputs={kind: str(p) for kind, p in chosen.items()},
        model=result.model.cpu(),
        mask=result.mask,
        masked_layers=mask_summary(model, result.mask) if result.mask is not None else (),
        info=result.info,
    )
    if info.is_main:
        _write_outputs(report, meta, chosen, source=source, targets=targets, force=force)
    finish_distributed()  # every rank waits for rank 0's writes before leaving the group
    return report


@dataclass(frozen=True, kw_only=True, eq=False)
class _Data:
    source: Data | None
    targets: tuple[Data, ...]
    keep: tuple[Data, ...]
    tests: dict[str, Data]


def _load_all(
    source: str | None,
    targets: Sequence[str],
    keep: Sequence[str],
    meta: ModelMeta,
    progress: bool,
    *,
    stream: bool,
    workers: int,
    source_train: bool = True,
) -> _Data:
    """Train splits of source/targets/keep (folders streamed when the method ``stream``s), test
    splits of those plus every other domain (folders streamed), all at the model's side. Without
    ``source_train`` the source's train split is never opened (source-free methods): the source
    and targets are then compared on their test splits."""
    k, side = meta.num_classes, input_side(meta)
    read_src = source is not None and source_train
    src_tr = _load_sets([source], "train", k, side, progress, stream)[0] if read_src else None
    tgt_tr = _load_sets(targets, "train", k, side, progress, stream)
    if src_tr is not None:
        _check_distinct(source, zip(targets, tgt_tr), src_tr, workers)
    keep_tr = _load_sets(keep, "train", k, side, progress, stream)
    src_spec = [source] if source is not None else []
    src_te = _load_sets(src_spec, "test", k, side, progress)
    classes = src_te[0].classes if src_te else meta.classes
    rest = [*targets, *_other_specs(source, targets, keep, classes)]
    tests = dict(zip([*src_spec, *rest], [*src_te, *_load_sets(rest, "test", k, side, progress)]))
    if src_tr is None and src_te:
        _check_distinct(source, ((t, tests[t]) for t in targets), src_te[0], workers)
    return _Data(source=src_tr, targets=tuple(tgt_tr), keep=tuple(keep_tr), tests=tests)


def _check_distinct(source: str | None, targets, src: Data, workers: int) -> None:  # noqa: ANN001
    """Source and targets (``(spec, split)`` pairs) must hold different images."""
    for spec, t in targets:
        if _same_images(src, t, workers):
            raise ConfigError(f"source '{source}' and target '{spec}' hold the same images")


def _metrics(source, targets, before, after, result, num_classes) -> ProtectionMetrics:  # noqa: ANN001
    others = [n for n in before if n != source and n not in targets]
    return protection_metrics(
        source=source,
        source_before=before.get(source),
        source_after=after.get(source),
        estimated_source_drop=result.info.get("estimated_source_drop"),
        targets={t: (before[t], after[t]) for t in targets},
        others={o: (before[o], after[o]) for o in others},
        pruned_fraction=result.mask.pruned_fraction if result.mask is not None else 0.0,
        num_classes=num_classes,
    )


def _write_outputs(
    report: ProtectReport,
    meta: ModelMeta,
    paths: Mapping[str, Path],
    *,
    source: str,
    targets: Sequence[str],
    force: bool,
) -> None:
    """Mask, metrics and export first; the checkpoint (which records the mask digest) last."""
    mask_sha = report.mask.sha256 if report.mask is not None else ""
    if "mask-out" in paths and report.mask is not None:
        save_mask(report.mask, paths["mask-out"], force=force)
    if "export" in paths:
        export_program(report.model, paths["export"], input_size=meta.input_size, force=force)
    extra = {
        **meta.extra,
        "method": report.method,
        "pruned_fraction": f"{report.metrics.pruned_fraction:.6f}",
        "source": source or "",
        "targets": json.dumps(list(targets)),
        "mask_sha256": mask_sha,
        "original_weights_sha256": meta.weights_sha256,
        "protect_config": json.dumps(dict(report.config), sort_keys=True),
        "tool": f"mapguard {__version__}",
    }
    saved = save_checkpoint(
        report.model, dataclasses.replace(meta, extra=extra), paths["out"], force=force
    )
    if "metrics-out" in paths:
        doc = report.to_dict() | {
            "protected_weights_sha256": saved.weights_sha256,
            "original_weights_sha256": meta.weights_sha256,
        }
        atomic_write_text(
            paths["metrics-out"], json.dumps(doc, indent=2, sort_keys=True) + "\n", force=force
        )
