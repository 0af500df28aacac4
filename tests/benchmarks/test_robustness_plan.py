"""The robustness benchmark's plan: at least 30 null models in both budgets, among them copies of
an independent teacher and models fine-tuned from the original's initialisation; the AdaBN rows."""

from __future__ import annotations

import pytest

from benchmarks.robustness.cli import _budget
from benchmarks.robustness.plan import FULL, QUICK, SOURCE, TARGET, null_labels


@pytest.mark.parametrize("budget", [QUICK, FULL], ids=["quick", "full"])
def test_at_least_30_distinct_null_models(budget):
    labels = null_labels(budget)
    assert len(labels) >= 30 and len(set(labels)) == len(labels)
    teacher = budget.independent[0].name
    for kind in ("distill", "distill-arch", "extract"):  # students of an independent teacher
        assert f"{kind} of {teacher}" in labels
    for label in ("ftal-10% of original", "ftal-10%-on-mnistm of original"):  # same init
        assert label in labels
    kinds = {(ar.kind, ar.data) for ar in budget.derived_nulls}
    assert ("ftal", "builtin:mnistm") in kinds and ("adabn", TARGET) in kinds


@pytest.mark.parametrize("budget", [QUICK, FULL], ids=["quick", "full"])
def test_adabn_rows_use_unlabelled_target_and_source_images(budget):
    rows = {a.label: a for a in budget.attacks}
    assert rows["adabn-10-target"].kind == "adabn" and rows["adabn-10-target"].data == TARGET
    assert rows["adabn-10-target"].options == {"n_images": 10}
    assert rows["adabn-100-source"].data == SOURCE
    assert len(rows["adabn-10-target"].seeds) >= 2


def test_attacks_option_selects_the_adabn_rows_and_refuses_unknown_ones():
    chosen = _budget(True, ["adabn-10-target", "adabn-100-source"])
    assert [a.label for a in chosen.attacks] == ["adabn-10-target", "adabn-100-source"]
    assert null_labels(chosen) == null_labels(QUICK)  # the null set does not depend on the rows
    with pytest.raises(SystemExit, match="unknown attack label"):
        _budget(True, ["adabn-1000"])
