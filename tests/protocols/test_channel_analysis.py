"""The channel block of a version-4 analysis: committed, read back exactly, refused when odd."""

import dataclasses

import pytest

from protocols.analysis import Analysis
from protocols.channel_analysis import ChannelAnalysis
from protocols.errors import SchemaError

CHANNEL = ChannelAnalysis(null_keys=1999, queries=400, query_set_sha256="ab" * 32,
                          secret_commitment="cd" * 32)  # fmt: skip
BASE = {"n_secrets": 8, "null_keys_per_secret": 7, "images_per_key": 64, "effect_floor": 0.3}


def test_a_channel_makes_a_version_4_analysis_that_reads_back_equal():
    a = Analysis(**BASE, channel=CHANNEL)
    block = a.to_block()
    assert (a.version, block["analysis_version"], a.channels) == ("4", "4", 2)
    assert block["channel"]["combination"] == "bonferroni"
    assert block["channel"]["admissible_if"] == "time-order"
    assert Analysis.from_block(block) == a
    assert a.queries == Analysis(**BASE).queries + 400
    # without a channel nothing changes: the version-3 block, byte for byte
    assert Analysis(**BASE).to_block() == {k: v for k, v in block.items() if k != "channel"} | {
        "analysis_version": "3"
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [({"combination": "fisher"}, "combination 'fisher' is not known"),
     ({"admissible_if": None}, "admissible_if .None. is not known"),
     ({"null_keys": 0}, "null_keys must be an integer in"),
     ({"null_keys": 10**9}, "null_keys must be an integer in"),
     ({"queries": 1.5}, "queries must be an integer"),
     ({"family": "cosine-tilt"}, "family must be one of"),
     ({"sharpness": -1}, "sharpness must be a number"),
     ({"secret_commitment": "AB" * 32}, "64 lowercase hex"),
     ({"extra": 1}, "unknown fields"),
     ({"regions": None}, "regions must be an integer")],
)  # fmt: skip
def test_a_malformed_channel_is_refused_with_its_field(change, message):
    """A verifier that guessed at a channel it does not understand would apply another test."""
    block = Analysis(**BASE, channel=CHANNEL).to_block()
    block["channel"] = block["channel"] | change
    with pytest.raises(SchemaError, match=message):
        Analysis.from_block(block)
    missing = {k: v for k, v in CHANNEL.to_block().items() if k != "queries"}
    with pytest.raises(SchemaError, match="lacks 'queries'"):
        ChannelAnalysis.from_block(missing)


def test_version_and_channel_go_together():
    with pytest.raises(ValueError, match="needs analysis version 4"):
        Analysis(**BASE, version="4")
    with pytest.raises(ValueError, match="needs analysis version 4"):
        Analysis(**BASE, channel=CHANNEL, version="2", floor_statistic="min")
    assert dataclasses.replace(CHANNEL, null_keys=9999).pvalue_floor == 1e-4
