"""Write a synthesis to a directory: pixels + metadata, an ImageFolder copy, and a picture grid."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from mapguard.data import ImageSet, grid_image
from mapguard.synthesis._result import SynthesisResult, save_result
from protocols.fileio import atomic_dir, check_output_dir

__all__ = [
    "as_imageset",
    "save_grid",
    "synthesize_to_dir",
    "write_synthesis",
]

RESULT_FILE = "pseudo_source.npz"
META_FILE = "synthesis.json"
GRID_FILE = "grid.png"
FOLDER = "images"


def as_imageset(
    result: SynthesisResult, *, classes: Sequence[str] | None = None, name: str = "pseudo-source"
) -> ImageSet:
    """The pseudo-source as an :class:`~mapguard.data.ImageSet` (split ``"all"``)."""
    names = (
        tuple(classes) if classes is not None else tuple(str(c) for c in range(result.num_classes))
    )
    return ImageSet(
        name=name, split="all", images=result.images, labels=result.labels, classes=names
    )


def save_grid(
    result: SynthesisResult,
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    n_per_class: int = 4,
    force: bool = False,
) -> Path:
    """Picture grid: the pseudo-source (a row per class) next to each neighbour family's version.

    The neighbour families are DF-MAP's (:mod:`mapguard.methods.free`), a package that builds on
    this one: they are imported when a grid is drawn, not when this module loads.
    """
    from mapguard.methods.free import neighbour_sets
    from protocols.fileio import atomic_path

    pseudo = as_imageset(result)
    image = grid_image(
        [pseudo, *neighbour_sets(pseudo, seed=seed)], n_per_class=n_per_class, seed=seed
    )
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    with atomic_path(path, force=force) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return Path(path)


def _write_folder(result: SynthesisResult, root: Path) -> None:
    for c in range(result.num_classes):
        (root / str(c)).mkdir(parents=True)
    for i, (img, label) in enumerate(zip(result.images, result.labels.tolist())):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / str(label) / f"{i:06d}.png")


def write_synthesis(
    result: SynthesisResult,
    out: str | os.PathLike[str],
    *,
    extra: dict | None = None,
    grid: bool = True,
    force: bool = False,
) -> Path:
    """Write ``result`` to directory ``out`` atomically.

    Files: ``pseudo_source.npz`` (read back with :func:`~mapguard.synthesis.load_result`),
    ``synthesis.json`` (options, seed, statistics, ``extra``), ``images/<class>/<i>.png`` (an
    ImageFolder: ``load_data("OUT/images")`` reads it) and ``grid.png`` (pseudo-source and
    neighbour-domain samples).

    Raises:
        OutputExistsError: ``out`` is a non-empty directory and ``force`` is False.
    """
    target = Path(out)
    with atomic_dir(target, force=force) as tmp:
        save_result(result, tmp / RESULT_FILE)
        meta = {**result.metadata(), **(extra or {})}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        _write_folder(result, tmp / FOLDER)
        if grid:
            save_grid(result, tmp / GRID_FILE, seed=result.seed)
    return target


def synthesize_to_dir(
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    n: int,
    seed: int = 0,
    steps: int | None = None,
    batch_size: int | None = None,
    cache: bool = True,
    force: bool = False,
    allow_unsafe: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Load a model file, synthesize ``n`` images and write them with :func:`write_synthesis`.

    The images have the model's side (its checkpoint's ``input_size``; 32 for a model file
    without metadata). The output location is validated before the (long) optimisation starts.
    """
    from mapguard.checkpoint import file_sha256, load_any_model
    from mapguard.synthesis._config import SynthesisConfig
    from mapguard.synthesis._synthesize import check_n, synthesize
    from mapguard.training import input_side

    check_n(n)
    changes = {k: v for k, v in {"steps": steps, "batch_size": batch_size}.items() if v is not None}
    config = SynthesisConfig().replace(**changes)
    target = Path(out)
    check_output_dir(target, force=force)  # fail before minutes of optimisation
    net, meta = load_any_model(model_path, allow_unsafe=allow_unsafe)
    side = input_side(meta)
    result = synthesize(
        net, n=n, config=config, seed=seed, cache=cache, device=device, progress=progress,
        size=side,
    )  # fmt: skip
    extra = {
        "model": str(model_path),
        "model_file_sha256": file_sha256(model_path),
        "image_side": side,
    }
    write_synthesis(result, target, extra=extra, force=force)
    return {**result.metadata(), **extra, "out": str(target)}
