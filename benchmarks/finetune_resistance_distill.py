"""An ATEsc-style data-free escape: distil the protected model on synthetic images it treats as
in-distribution, into a fresh student, and measure the student on the target domain.

Our reading of ATEsc (ICML 2025: a non-transferable model can be escaped by data-free
distillation after dropping the out-of-distribution-looking synthetic images): the thief has
the stolen model and no data at all. It (1) synthesises pseudo-source images from the model
(:func:`mapguard.synthesis.synthesize`, DeepInversion-style on the model's own BatchNorm
statistics), (2) keeps the ``keep`` fraction the model answers most confidently (the
in-distribution-looking ones; a restricted model's answers on the others carry its
restriction), (3) trains a fresh student of the same architecture on the model's soft labels of
those clean images while the student sees them under random colour shifts and noise
(:func:`~benchmarks.finetune_resistance_source.shift_batch`), so the student learns the source
task without the teacher's sensitivity to the domain. The benchmark reports the student's target
(and source) accuracy for the protected and the unprotected teacher: the issue asks for the
protected model's student to reach at most half of the unprotected one's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.finetune_resistance_source import shift_batch
from mapguard.data import ImageSet
from mapguard.models import create_model
from mapguard.synthesis import SynthesisConfig, synthesize
from mapguard.training import accuracy
from protocols.fileio import atomic_write_text

__all__ = ["Escape", "distill_route", "escape_student"]


@dataclass(frozen=True, kw_only=True)
class Escape:
    """The data-free thief's budget."""

    images: int = 1000
    synthesis_steps: int = 200
    keep: float = 0.5
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    temperature: float = 4.0


def escape_student(
    teacher: nn.Module, *, arch: str, seed: int, escape: Escape = Escape()
) -> tuple[nn.Module, dict[str, float]]:
    """A fresh ``arch`` student distilled from ``teacher`` on its own most confidently answered
    synthetic images (seen by the student under random shifts), and what was kept."""
    teacher = teacher.eval()
    cfg = SynthesisConfig(steps=escape.synthesis_steps)
    syn = synthesize(teacher, n=escape.images, config=cfg, seed=seed, progress=False)
    x = syn.images.to(torch.float32) / 255.0
    with torch.no_grad():
        logits = torch.cat([teacher(x[i : i + 500]) for i in range(0, len(x), 500)])
    confidence = F.softmax(logits, dim=1).amax(1)
    kept = confidence.argsort(descending=True)[: max(1, round(escape.keep * len(x)))]
    x, soft = x[kept], F.softmax(logits[kept] / escape.temperature, dim=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = create_model(arch, num_classes=logits.shape[1])
    _distil(student, x, soft, seed=seed, escape=escape)
    info = {"kept": float(len(kept)), "kept_confidence": float(confidence[kept].mean())}
    return student.eval(), info


def _distil(
    student: nn.Module, x: torch.Tensor, soft: torch.Tensor, *, seed: int, escape: Escape
) -> None:
    steps = escape.epochs * math.ceil(len(x) / escape.batch_size)
    opt = torch.optim.SGD(student.parameters(), lr=escape.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=escape.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    student.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (min(escape.batch_size, len(x)),), generator=gen)
        log_p = F.log_softmax(student(shift_batch(x[idx], gen)) / escape.temperature, dim=1)
        loss = F.kl_div(log_p, soft[idx], reduction="batchmean") * escape.temperature**2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


def distill_route(
    run: Path, pair: tuple[str, str], models: Mapping[str, nn.Module],
    tests: Mapping[str, ImageSet], *, arch: str, seed: int = 0, escape: Escape = Escape(),
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Source and target accuracy of every model's escaped student (cached per model)."""
    folder = run / "distill-route" / f"{pair[0]}-{pair[1]}"
    out = {}
    for label, model in models.items():
        path = folder / f"{label}-s{seed}.json"
        if not path.exists():
            student, info = escape_student(model, arch=arch, seed=seed, escape=escape)
            row = {"student_source": accuracy(student, tests[pair[0]]),
                   "student_target": accuracy(student, tests[pair[1]]), **info}  # fmt: skip
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(row) + "\n", force=True)
        out[label] = json.loads(path.read_text())
    return out
