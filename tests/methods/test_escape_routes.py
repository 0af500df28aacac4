"""The issue-18 benchmarks' thieves on tiny real data: the ATEsc-style data-free escape
(``benchmarks.finetune_resistance_distill``) trains a fresh student from synthetic images alone,
and the watermark's ``target-ft`` curve (``benchmarks.watermark_target_ft``) verifies every
attacked copy with the committed analysis."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from benchmarks import watermark_target_ft as wtf
from benchmarks.finetune_resistance_distill import Escape, distill_route, escape_student
from mapguard.models import create_model
from mapguard.training import accuracy

#: A budget of seconds: 64 synthetic images of 10 inversion steps, 2 student epochs.
TINY_ESCAPE = Escape(images=64, synthesis_steps=10, epochs=2, batch_size=32)


def test_escape_student_trains_on_the_confident_synthetic_images(
    tiny_model, mnist_small, mnistm_small
) -> None:
    student, info = escape_student(tiny_model, arch="vgg_tiny", seed=0, escape=TINY_ESCAPE)
    assert student is not tiny_model and info["kept"] == 32  # the confident half
    # the same (cached) synthetic images, all kept: the kept half was the more confident one
    _, everything = escape_student(
        tiny_model, arch="vgg_tiny", seed=0, escape=dataclasses.replace(TINY_ESCAPE, keep=1.0)
    )
    assert everything["kept"] == 64
    assert 0.1 < everything["kept_confidence"] < info["kept_confidence"] <= 1.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        fresh = create_model("vgg_tiny", num_classes=10)  # the student's initialisation
    moved = [not torch.equal(a, b) for a, b in zip(fresh.parameters(), student.parameters())]
    assert all(moved)  # every parameter tensor was trained
    source, target = accuracy(student, mnist_small[1]), accuracy(student, mnistm_small[1])
    assert math.isfinite(source) and math.isfinite(target)
    assert 0 <= source <= 1 and 0 <= target <= 1


def test_distill_route_caches_each_student(tmp_path, tiny_model, mnist_small, mnistm_small) -> None:
    tests = {"mnist": mnist_small[1], "mnistm": mnistm_small[1]}
    cheap = Escape(images=32, synthesis_steps=2, epochs=1, batch_size=16)
    first = distill_route(tmp_path, ("mnist", "mnistm"), {"unprotected": tiny_model}, tests,
                          arch="vgg_tiny", escape=cheap)  # fmt: skip
    row = first["unprotected"]
    assert 0 <= row["student_source"] <= 1 and 0 <= row["student_target"] <= 1
    # the second call reads the cached row (a different model under the same label is not run)
    again = distill_route(tmp_path, ("mnist", "mnistm"), {"unprotected": torch.nn.Identity()},
                          tests, arch="vgg_tiny", escape=cheap)  # fmt: skip
    assert again == first


def test_target_ft_curve_verifies_every_copy(embedded, tmp_path, mnist_small, mnistm_small) -> None:
    tests = {"source": mnist_small[1], "target": mnistm_small[1]}
    kw = {"ns": (0, 40), "lrs": (0.01, 0.05), "seeds": (0,), "epochs": 2, "tests": tests}
    rows = wtf.curve_rows(tmp_path, embedded.out, with_adabn=True, **kw)
    assert [(r["attack"], r["n"], r["lr"]) for r in rows] == [
        ("none", 0, None), ("target-ft", 40, 0.01), ("target-ft", 40, 0.05), ("adabn", 40, None),
        ("adabn-source", 40, None),
    ]  # fmt: skip
    for r in rows:
        assert 0 < r["pvalue"] <= 1 and 0 <= r["target"] <= 1 and r["weakest"] <= r["median"]
    assert rows[0]["evidenced"]  # the watermarked model as stolen
    assert rows[1]["target"] != rows[0]["target"]  # the copy was fine-tuned
    best = wtf.best_rows(rows)
    assert [(b["attack"], b["n"]) for b in best] == [
        ("none", 0), ("target-ft", 40), ("adabn", 40), ("adabn-source", 40)
    ]  # fmt: skip
    assert best[1]["target"] == max(rows[1]["target"], rows[2]["target"])
    assert best[1]["max_pvalue"] == max(rows[1]["pvalue"], rows[2]["pvalue"])
    assert wtf.curve_rows(tmp_path, embedded.out, with_adabn=True, **kw) == rows  # cached
    assert len(wtf.table_lines(rows)) == 2 + 4


def test_adabn_changes_only_the_batch_norm_statistics(embedded, mnistm_small) -> None:
    from mapguard.checkpoint import load_checkpoint

    victim = load_checkpoint(embedded.file("protected.pt"))[0]
    adapted = wtf.adabn(embedded.file("protected.pt"), mnistm_small[0].take(40, seed=0).floats())
    assert not adapted.training
    for (name, a), b in zip(adapted.state_dict().items(), victim.state_dict().values()):
        if name.endswith(("running_mean", "running_var")):
            assert not torch.equal(a, b), name  # re-estimated on the target images
        elif not name.endswith("num_batches_tracked"):
            assert torch.equal(a, b), name  # weights untouched


@pytest.mark.parametrize(
    "args", [["--ns", "0,ten"], ["--lrs", "0"], ["--epochs", "0"], ["--wm-dir", "/nonexistent"]]
)
def test_watermark_target_ft_refuses_bad_input(args, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        wtf.main(args)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
