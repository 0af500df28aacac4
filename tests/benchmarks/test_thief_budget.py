"""``--thief-steps-scale`` of the fine-tuning-resistance benchmark (``_thief_budget``)."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import _thief_budget as tb
from benchmarks import finetune_resistance as fr
from benchmarks.finetune_resistance_curves import steps_for

NS = (10, 50, 100, 500)


def _steps(budget: fr.Budget) -> list[int]:
    """The thief's steps per N (it trains on N minus its validation fifth)."""
    return [steps_for(n - max(1, n // 5), budget.thief) for n in NS]


def _parse(*argv: str) -> fr.Budget:
    ap = argparse.ArgumentParser()
    tb.add_options(ap)
    return tb.apply_options(ap, ap.parse_args(argv), fr.QUICK)


def test_the_default_is_the_long_thief_and_scale_1_keeps_the_old_cache_names() -> None:
    budget = _parse()
    assert budget.thief_steps_scale == tb.DEFAULT_SCALE == 5
    assert _steps(budget) == [200, 200, 300, 600] and budget.seeds == fr.QUICK.seeds
    assert tb.tag(budget.thief_steps_scale) == "-steps5x"
    old = _parse("--thief-steps-scale", "1")
    assert old.thief == fr.QUICK.thief and _steps(old) == [40, 40, 60, 120]
    assert tb.tag(old.thief_steps_scale) == ""  # rows/, results.json: sessions 8-12's points


def test_a_scale_multiplies_the_steps_per_n_and_names_its_own_cache() -> None:
    budget = _parse("--thief-steps-scale", "10", "--seeds", "0")
    assert _steps(budget) == [400, 400, 600, 1200]
    assert budget.thief.lrs == fr.QUICK.thief.lrs and budget.seeds == (0,)
    assert tb.tag(budget.thief_steps_scale) == "-steps10x"
    assert _steps(_parse("--thief-steps-scale", "2.5")) == [100, 100, 150, 300]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--thief-steps-scale", "0"], "--thief-steps-scale: the thief's step scale must be a "
                                       "positive number, got 0.0"),
        (["--thief-steps-scale", "nan"], "must be a positive number, got nan"),
        (["--thief-steps-scale", "-2"], "must be a positive number, got -2.0"),
        (["--thief-steps-scale", "x"], "argument --thief-steps-scale: invalid float value: 'x'"),
        (["--seeds", "0,a"], "--seeds: expected comma-separated integers, got '0,a'"),
    ],
)  # fmt: skip
def test_the_benchmark_refuses_a_bad_budget_in_one_line(argv, message, capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        fr.main(["--quick", "--no-plot", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "".join(err)
