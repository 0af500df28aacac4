"""The pre-registered analysis block: versions 2 and 3 read and written byte for byte, the floor
statistic fixed by the commitment and nowhere else."""

from __future__ import annotations

import pytest

from protocols.analysis import ANALYSIS_VERSION, Analysis
from protocols.errors import SchemaError
from verification._errors import VerificationError
from verification.verify import VerifyConfig

BASE = {"n_secrets": 8, "null_keys_per_secret": 7, "images_per_key": 64, "effect_floor": 0.3}


def test_version_3_names_its_floor_statistic_and_round_trips():
    a = Analysis(**BASE)
    block = a.to_block()
    assert block["analysis_version"] == ANALYSIS_VERSION == "3"
    assert block["floor_statistic"] == "median" == a.floor_statistic
    assert Analysis.from_block(block) == a
    assert (
        Analysis.from_block(Analysis(**BASE, floor_statistic="min").to_block()).floor_statistic
        == "min"
    )


def test_a_version_2_block_reads_as_the_weakest_secret_and_writes_back_unchanged():
    """Commitments published before version 3 keep their meaning and their bytes."""
    v2 = {k: v for k, v in Analysis(**BASE).to_block().items() if k != "floor_statistic"}
    v2["analysis_version"] = "2"
    a = Analysis.from_block(v2)
    assert (a.version, a.floor_statistic) == ("2", "min")
    assert a.to_block() == v2
    with pytest.raises(ValueError, match="version-2 analysis floors the weakest"):
        Analysis(**BASE, version="2")  # the median needs a version-3 block


@pytest.mark.parametrize(
    ("change", "message"),
    [({"floor_statistic": "mean"}, "floor_statistic must be one of"),
     ({"analysis_version": "5"}, "analysis version '5' is not known"),
     ({"analysis_version": "4"}, "channel is not an object"),
     ({"channel": {}}, "version-3 analysis has no channel"),
     ({"floor_statistic": None}, "floor_statistic must be one of")],
)  # fmt: skip
def test_malformed_version_3_blocks_are_refused(change, message):
    block = Analysis(**BASE).to_block() | change
    with pytest.raises(SchemaError, match=message):
        Analysis.from_block(block)
    missing = {k: v for k, v in Analysis(**BASE).to_block().items() if k != "floor_statistic"}
    with pytest.raises(SchemaError, match="lacks 'floor_statistic'"):
        Analysis.from_block(missing)


@pytest.mark.parametrize("rule", ["min", "median"])
def test_the_verifier_takes_the_floor_statistic_from_the_commitment_only(rule):
    """Choosing the floor statistic after seeing a suspect would be a way to grind the verdict."""
    a = Analysis(**BASE, floor_statistic=rule)
    cfg = VerifyConfig.from_analysis(a, null_seed="ab" * 32, gives_probabilities=True)
    assert (cfg.floor_statistic, cfg.effect_floor) == (rule, 0.3)
    with pytest.raises(VerificationError, match="fixes floor_statistic"):
        VerifyConfig.from_analysis(a, null_seed="ab" * 32, gives_probabilities=True,
                                   floor_statistic="min")  # fmt: skip


def test_the_rank_sum_test_is_committed_like_any_other():
    """``pooled-rank-sum`` is written in the block, read back, and is what the verifier runs;
    it cannot be swapped for ``pooled-min`` (or back) after the commitment."""
    from math import comb

    a = Analysis(**BASE, test="pooled-rank-sum")
    assert a.to_block()["test"] == "pooled-rank-sum" and Analysis.from_block(a.to_block()) == a
    assert a.pvalue_floor == 1 / comb(64, 8) == Analysis(**BASE).pvalue_floor
    cfg = VerifyConfig.from_analysis(a, null_seed="ab" * 32, gives_probabilities=True)
    assert cfg.test == "pooled-rank-sum"
    with pytest.raises(VerificationError, match="fixes test"):
        VerifyConfig.from_analysis(a, null_seed="ab" * 32, gives_probabilities=True,
                                   test="pooled-min")  # fmt: skip
    with pytest.raises(SchemaError, match="test must be one of"):
        Analysis.from_block(a.to_block() | {"test": "rank-sum"})
