"""Null models that copy a model the owner's secrets never touched (issue 15, "null models").

A false accusation is likeliest where a suspect shares the most with the watermarked model
without carrying its secrets. Two groups, each a model made without the secrets, so a valid
verification may evidence none of them:

- **copies of an independent teacher** (shared by every watermark): soft-label distillation
  into the same architecture and into ``vgg_tiny``, and hard-label extraction, all on the
  owner's task data (``builtin:mnist``), from the independent ``vgg_small`` MNIST seed 0;
- **the watermark's own original** (paired with that watermark only): the source model as it
  was before ``embed`` (the same weights, the same training data, everything but the mask),
  FTAL on 10% of the data from it (a model fine-tuned from the same initialisation as the
  owner's) and its distilled student.

Each copy is made once with ``mapguard.attacks.attack_file`` (the kinds' default budgets) and
cached next to the benchmark's other models.
"""

from __future__ import annotations

import time
from pathlib import Path

from mapguard.attacks import attack_file

__all__ = ["OWN_KINDS", "TEACHER_KINDS", "copies_of_original", "copies_of_teacher"]

#: Copies of the independent teacher: (attack kind, student architecture in the name).
TEACHER_KINDS = ("distill", "distill-arch", "extract")
#: Models made from the watermark's own original (``None``: the original itself).
OWN_KINDS = (None, "ftal", "distill")
_DATA = "builtin:mnist"


def _copy(victim: Path, kind: str, out: Path, seed: int) -> Path:
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    info, _ = attack_file(victim, kind, out=out, data=_DATA, seed=seed, progress=False)
    print(f"  made {out.stem} ({info.kind}, {info.n_images} images) in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    return out


def copies_of_teacher(run: Path, teacher: Path, teacher_name: str) -> list[tuple[str, Path]]:
    """``(name, checkpoint)`` of the independent teacher's copies (made if missing)."""
    return [
        (f"{kind} of independent {teacher_name}",
         _copy(teacher, kind, run / "copies" / f"{teacher_name}-{kind}.pt", seed=11))
        for kind in TEACHER_KINDS
    ]  # fmt: skip


def copies_of_original(run: Path, original: Path, name: str) -> list[tuple[str, Path]]:
    """``(name, checkpoint)`` of the original and the models made from it (made if missing)."""
    out = []
    for kind in OWN_KINDS:
        if kind is None:
            out.append((f"original {name} (before embed)", original))
        else:
            path = run / "copies" / f"{name}-{kind}.pt"
            out.append((f"{kind} of original {name}", _copy(original, kind, path, seed=12)))
    return out
