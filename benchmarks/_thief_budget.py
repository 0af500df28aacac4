"""The attacker's step budget of :mod:`benchmarks.finetune_resistance`: ``--thief-steps-scale``.

The thief takes ``20`` passes over its training images, clamped to ``[40, 120]`` steps in the
quick budget (40, 40, 60 and 120 steps at ``N`` = 10, 50, 100, 500), times ``S``: ``S``
multiplies the passes and both clamps (the learning-rate grid unchanged). **The default is
S = 5** (200, 200, 300, 600 steps) since session 13: at S = 1 the thief stops inside the
60-150-step plateau of cross-entropy ``ln 10`` on which ``nft-weights`` models start, and the
quick benchmark's SLC-AUC <= 0 of session 12 was an artefact of that (docs/ROBUSTNESS.md,
issue 18, sessions 12 and 13). S = 10 moved scratch by at most 5 points at N <= 100 and is
about twice as slow. Points of a budget other than S = 1 are cached under ``rows-steps{S}x``
and the results in ``results-steps{S}x.json``, so they never mix with the S = 1 budget's
``rows`` and ``results.json`` (``--thief-steps-scale 1``: the budget of sessions 8-12).
``--seeds`` narrows the fine-tuning seeds (a resumable run can add seeds later).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, TypeVar

from benchmarks.finetune_resistance_curves import Thief

__all__ = ["DEFAULT_SCALE", "add_options", "apply_options", "scaled", "tag"]

B = TypeVar("B")

#: The thief's default step scale (``--thief-steps-scale``).
DEFAULT_SCALE = 5.0


def scaled(thief: Thief, scale: float) -> Thief:
    """``thief`` with its passes (``epochs``) and its step clamps multiplied by ``scale``."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"the thief's step scale must be a positive number, got {scale!r}")
    if scale == 1:
        return thief
    grow = lambda n: max(1, round(n * scale))  # noqa: E731
    return dataclasses.replace(thief, epochs=grow(thief.epochs), min_steps=grow(thief.min_steps),
                               max_steps=grow(thief.max_steps))  # fmt: skip


def tag(scale: float) -> str:
    """The cache-name suffix of a step scale: ``""`` for 1, else ``-steps{scale}x``."""
    return "" if scale == 1 else f"-steps{scale:g}x"


def add_options(ap: argparse.ArgumentParser) -> None:
    """``--thief-steps-scale S`` and ``--seeds K,...`` on the benchmark's parser."""
    ap.add_argument("--thief-steps-scale", type=float, default=DEFAULT_SCALE, metavar="S",
                    help="multiply the thief's steps per N (passes and the min/max clamps) by S; "
                         "S = 1 is sessions 8-12's budget (default 5)")  # fmt: skip
    ap.add_argument("--seeds", help="comma-separated fine-tuning seeds (default: the budget's)")


def apply_options(ap: argparse.ArgumentParser, args: argparse.Namespace, budget: B) -> B:
    """``budget`` with the parsed options applied (``ap.error`` on a bad value)."""
    scale = args.thief_steps_scale
    try:
        thief = scaled(budget.thief, scale)  # type: ignore[attr-defined]
    except ValueError as exc:
        ap.error(f"--thief-steps-scale: {exc}")
    changes: dict[str, Any] = {"thief": thief, "thief_steps_scale": scale}
    if args.seeds:
        try:
            changes["seeds"] = tuple(int(s) for s in args.seeds.split(","))
        except ValueError:
            ap.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    return dataclasses.replace(budget, **changes)  # type: ignore[type-var]
