"""``evaluate``: accuracy of a model file on data sets, and drops / ST-D against a reference
(library side of ``mapguard evaluate``; the CLI only prints).

Checkpoints load as data; code formats (``.pt2``, TorchScript) are queried in the isolated worker
of :mod:`verification.backends` unless unsafe loading is allowed.

Example:
    >>> # evaluate_model("protected.pt", ["builtin:mnist", "builtin:mnistm"], reference="model.pt",
    >>> #                source="builtin:mnist")
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mapguard._device import default_device
from mapguard._errors import ModelFileError
from mapguard._progress import console
from mapguard.checkpoint import ModelMeta, load_any_model
from mapguard.training import accuracy, check_compatible, input_side, probe_num_classes

__all__ = ["evaluate_model", "render_accuracy_table"]


class _Queried(nn.Module):
    """A model file of a code format, queried in the isolated worker (answers probabilities)."""

    def __init__(self, backend: Any) -> None:
        super().__init__()
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backend.query(x.detach().cpu().float())


def _open_for_queries(
    path: str | Path, allow_unsafe: bool, stack: contextlib.ExitStack
) -> tuple[nn.Module, ModelMeta | None]:
    """Checkpoints load here (data); code formats run in the isolated worker unless unsafe."""
    from mapguard.checkpoint import CODE_FORMATS, detect_format

    if allow_unsafe or detect_format(path) not in CODE_FORMATS:
        return load_any_model(path, allow_unsafe=allow_unsafe)
    from verification.backends import load_suspect

    backend = load_suspect(path)
    stack.callback(backend.close)
    return _Queried(backend), None


def _open_reference(
    path: str | Path, side: int, allow_unsafe: bool, stack: contextlib.ExitStack
) -> nn.Module:
    ref, meta = _open_for_queries(path, allow_unsafe, stack)
    if meta is not None and input_side(meta) != side:
        raise ModelFileError(
            f"reference '{path}' takes {input_side(meta)}x{input_side(meta)} images, the model "
            f"{side}x{side}"
        )
    return ref


def _accuracy_rows(
    model: nn.Module,
    ref: nn.Module | None,
    data_specs: list[str],
    *,
    split: str,
    k: int,
    side: int,
    dev: torch.device,
    progress: bool,
    workers: int,
) -> dict[str, dict[str, float]]:
    from mapguard.data import load_or_stream

    rows: dict[str, dict[str, float]] = {}
    for spec in data_specs:
        data = load_or_stream(spec, split=split, progress=progress, size=side)
        check_compatible(k, data, side=side)
        row = {"accuracy": accuracy(model.to(dev), data, device=dev, workers=workers)}
        if ref is not None:
            row["reference_accuracy"] = accuracy(ref.to(dev), data, device=dev, workers=workers)
        rows[spec] = row
    return rows


def evaluate_model(
    model_path: str | Path,
    data_specs: list[str],
    *,
    split: str = "test",
    reference: str | Path | None = None,
    source: str | None = None,
    allow_unsafe: bool = False,
    device: str | None = None,
    progress: bool = True,
    workers: int = 0,
) -> dict[str, Any]:
    """Accuracy on each data spec; with ``reference`` also before/after, drops and ST-D.

    The data are loaded at the model's image side (its checkpoint's ``input_size``; 32 for a
    model file without metadata); a reference checkpoint that records another side is refused.
    Folders are streamed from disk in batches (``workers`` decoding processes), built-in domains
    held in memory.
    """
    from mapguard._config import check_int
    from mapguard.metrics import protection_metrics

    check_int("workers", workers, low=0)

    dev = default_device(device)
    with contextlib.ExitStack() as stack:
        model, meta = _open_for_queries(model_path, allow_unsafe, stack)
        side = input_side(meta)
        k = meta.num_classes if meta is not None else probe_num_classes(model, size=side)
        ref = _open_reference(reference, side, allow_unsafe, stack) if reference else None
        rows = _accuracy_rows(
            model, ref, data_specs, split=split, k=k, side=side, dev=dev, progress=progress,
            workers=workers,
        )  # fmt: skip
    report: dict[str, Any] = {"model": str(model_path), "split": split, "accuracy": rows}

    if ref is not None and source is not None:
        if source not in rows:
            raise ModelFileError(f"--source '{source}' must also be given as --data")
        pairs = {s: (r["reference_accuracy"], r["accuracy"]) for s, r in rows.items()}
        sb, sa = pairs.pop(source)
        m = protection_metrics(
            source=source,
            source_before=sb,
            source_after=sa,
            targets=pairs,
            others={},
            pruned_fraction=float("nan")
            if meta is None
            else float(meta.extra.get("pruned_fraction", "nan")),
            num_classes=k,
        )
        report["metrics"] = {**m.to_dict(), "pruned_fraction": None}
    return report


def render_accuracy_table(report: dict[str, Any]) -> None:
    """Print an accuracy table (rich) for :func:`evaluate_model`'s report."""
    from rich.table import Table

    rows = report["accuracy"]
    has_ref = any("reference_accuracy" in r for r in rows.values())
    table = Table(title=f"{report['model']} ({report['split']} split)")
    table.add_column("data")
    if has_ref:
        table.add_column("reference", justify="right")
    table.add_column("accuracy", justify="right")
    for spec, r in rows.items():
        cells = [spec]
        if has_ref:
            cells.append(f"{r['reference_accuracy']:.2%}")
        cells.append(f"{r['accuracy']:.2%}")
        table.add_row(*cells)
    console.print(table)
    st = report.get("metrics", {}).get("st_d")
    if st is not None:
        console.print(f"ST-D: {st:.3f}")
