"""The robustness benchmark's verification rows are reused only under the same key: the suspect,
the watermark, the transform, the nonce, the verifying code; a rerun gets the same row."""

from __future__ import annotations

import shutil

import pytest

from benchmarks.robustness.run import suspect_row
from benchmarks.robustness.verified import cached_row, code_digest, row_key


def test_cached_row_computes_once_per_key(tmp_path):
    calls = []

    def compute():  # noqa: ANN202
        calls.append(1)
        return {"p": 0.5, "ranks": [1, 2]}

    first = cached_row(tmp_path, "a" * 64, compute)
    again = cached_row(tmp_path, "a" * 64, compute)
    other = cached_row(tmp_path, "b" * 64, compute)
    assert len(calls) == 2 and first == other == {"p": 0.5, "ranks": [1, 2]}
    assert again == first | {"cached": True}
    assert cached_row(None, "a" * 64, compute) == first and len(calls) == 3  # no cache


def test_the_key_holds_every_part():
    base = {"suspect": "s", "commitment": "c", "transform": None, "nonce": "n"}
    keys = {row_key(**base)}
    for name, value in [("suspect", "s2"), ("commitment", "c2"), ("transform", "jpeg"),
                        ("nonce", "n2")]:  # fmt: skip
        keys.add(row_key(**{**base, name: value}))
    assert len(keys) == 5 and row_key(**base) == row_key(**dict(reversed(base.items())))


def test_the_code_digest_follows_every_file(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "one.py").write_text("z = 3\n")
    before = code_digest(tmp_path, ("pkg", "one.py"))
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    after = code_digest.__wrapped__(tmp_path, ("pkg", "one.py"))  # past the per-process cache
    assert after != before
    assert code_digest.__wrapped__(tmp_path, ("pkg",)) != after


@pytest.mark.slow  # the session's embedded watermark (shared with tests/watermark), 3 verifies
def test_a_rerun_reuses_the_row_and_another_suspect_does_not(embedded, mnist_small, tmp_path):
    from verification.watermark_file import read_watermark, watermark_spec

    wm = read_watermark(embedded.file("owner.wm"))
    spec, test = watermark_spec(wm), mnist_small[1]
    suspect = tmp_path / "suspect.pt"
    shutil.copy(embedded.file("protected.pt"), suspect)
    cache = tmp_path / "verified"
    fresh = suspect_row("x", "none", 0, suspect, spec, wm.analysis, test, cache=cache)
    again = suspect_row("y", "none", 1, suspect, spec, wm.analysis, test, cache=cache)
    assert "cached" not in fresh and again.pop("cached") is True
    assert again | {"label": "x", "seed": 0} == fresh  # the same row, the caller's label
    source = suspect_row("z", "none", 0, embedded.original, spec, wm.analysis, test, cache=cache)
    assert "cached" not in source and source["labels"]["pvalue"] != fresh["labels"]["pvalue"]


def test_paired_tests_recompute_the_verdict_and_the_other_pooled_test():
    """Each row's ``tests``: the committed test's p equals the verdict's (the function raises
    otherwise); the other pooled test is decided on the same statistics, floor and alpha."""
    import dataclasses

    from benchmarks.robustness.run import paired_tests
    from tests.verification.test_verify import Teacher, WeakenedDetector, make_spec
    from verification.backends import ModuleBackend
    from verification.triggers import get_trigger_family
    from verification.verify import VerifyConfig, verify

    spec = make_spec(k=8, seed=3)  # one secret erased, seven intact (see test_verify)
    fam = get_trigger_family(spec.family)
    model = WeakenedDetector(Teacher(3), [fam.derive(s, params=spec.family_params)
                                          for s in spec.secrets], [0.0] + [1.0] * 7)  # fmt: skip
    cfg = VerifyConfig(null_keys_per_secret=7, n_resamples=200, labels_only=True,
                       test="pooled-min", effect_floor=0.5, ties="randomized")  # fmt: skip
    res = verify(ModuleBackend(model), spec, cfg)
    out = paired_tests(cfg, res)
    assert out["pooled-min"] == {"pvalue": res.pvalue, "evidenced": res.evidenced}
    assert not res.evidenced and out["pooled-rank-sum"]["evidenced"]
    assert out["pooled-rank-sum"]["pvalue"] < 1e-3 < res.pvalue
    other = verify(ModuleBackend(model), spec, dataclasses.replace(cfg, test="pooled-rank-sum"))
    assert other.pvalue == out["pooled-rank-sum"]["pvalue"]  # the same coins, the same p
    with pytest.raises(RuntimeError, match="differs from the verdict"):
        paired_tests(cfg, dataclasses.replace(res, pvalue=res.pvalue / 2))
