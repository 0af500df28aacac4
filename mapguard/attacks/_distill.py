"""Distillation attacks: a fresh student learns from the victim's answers on the attacker's data
(soft labels, Hinton et al. 2015), into the same or another architecture, or from hard labels
only (model extraction, as through a label-only API)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mapguard._errors import ConfigError, ModelFileError
from mapguard.attacks._registry import AttackContext, AttackOutput, register_attack
from mapguard.attacks._train import fit
from mapguard.models import create_model
from mapguard.training import probe_num_classes

__all__ = ["distill", "distill_arch", "extract", "fresh_student"]

#: Soft-label defaults. The KL term is scaled by T^2 (Hinton et al.), which makes its gradient up
#: to T times a cross-entropy's: at T = 4 a peak lr of 0.05 killed a vgg_small student (10%
#: accuracy) while 0.01 reached 94% (vgg_tiny teacher, 1,000 images, 3 epochs).
_DISTILL = {"fraction": 1.0, "epochs": 10, "lr": 0.01, "temperature": 4.0}


def fresh_student(ctx: AttackContext, arch: str) -> nn.Module:
    """An untrained ``arch`` with the victim's class count and normalisation, seeded by ctx.

    For an unnamed victim architecture (``"unknown"``) the student is a re-initialised copy.
    """
    with torch.random.fork_rng(devices=[]):  # parameter init draws from the global generator
        torch.manual_seed(ctx.seed)
        if arch == "unknown":
            student = copy.deepcopy(ctx.model)
            for m in student.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            return student
        return create_model(arch, num_classes=ctx.num_classes, mean=ctx.mean, std=ctx.std)


def _check_student_side(student: nn.Module, arch: str, side: int | None) -> None:
    """Refuse a student that cannot take the attacker's image side (e.g. a 32-pixel zoo arch
    for a 224-pixel victim) in one line, before any training."""
    if side is None:
        return
    try:
        probe_num_classes(student, size=side)
    except ModelFileError:
        raise ConfigError(
            f"student architecture '{arch}' does not take {side}x{side} images; choose another "
            "with --arch"
        ) from None


def _soft_loss(teacher: nn.Module, temperature: float):
    def loss(student: nn.Module, x: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = F.softmax(teacher(x) / temperature, dim=1)
        log_p = F.log_softmax(student(x) / temperature, dim=1)
        return F.kl_div(log_p, target, reduction="batchmean") * temperature**2

    return loss


def _hard_loss(teacher: nn.Module):
    def loss(student: nn.Module, x: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            label = teacher(x).argmax(dim=1)
        return F.cross_entropy(student(x), label)

    return loss


def _run(ctx: AttackContext, arch: str, loss, label: str) -> AttackOutput:  # noqa: ANN001
    student = fresh_student(ctx, arch)
    _check_student_side(student, arch, ctx.data.side if ctx.data is not None else None)
    teacher = ctx.model.to(ctx.device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    fit(ctx, student, params=student.parameters(), loss_fn=loss, label=label)
    return AttackOutput(
        model=student, arch=arch, details={"student_arch": arch, "teacher_arch": ctx.arch}
    )


@register_attack(
    "distill",
    description="distil the model's soft labels into a fresh copy of the same architecture",
    defaults=_DISTILL,
)
def distill(ctx: AttackContext) -> AttackOutput:
    """Knowledge distillation (KL at ``temperature``) into the victim's own architecture."""
    return _run(
        ctx, ctx.config.arch or ctx.arch, _soft_loss(ctx.model, ctx.config.temperature), "distill"
    )


def _other_arch(arch: str) -> str:
    return "vgg_tiny" if arch == "vgg_small" else "vgg_small"


@register_attack(
    "distill-arch",
    description="distil soft labels into a different architecture (--arch; default vgg_small)",
    defaults=_DISTILL,
)
def distill_arch(ctx: AttackContext) -> AttackOutput:
    """Knowledge distillation into another architecture (``--arch``)."""
    arch = ctx.config.arch or _other_arch(ctx.arch)
    if arch == ctx.arch:
        raise ConfigError(f"distill-arch needs a student architecture other than '{arch}'")
    return _run(ctx, arch, _soft_loss(ctx.model, ctx.config.temperature), "distill-arch")


@register_attack(
    "extract",
    description="model extraction: train a fresh model on the victim's hard labels only",
    defaults={"fraction": 1.0, "epochs": 10, "lr": 0.05},
)
def extract(ctx: AttackContext) -> AttackOutput:
    """Label-only extraction: cross-entropy on the victim's top-1 answers (same arch unless
    ``--arch``)."""
    return _run(ctx, ctx.config.arch or ctx.arch, _hard_loss(ctx.model), "extract")
