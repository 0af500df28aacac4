"""The method registry: built-ins are present however the registry is reached; unknown names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mapguard._errors import ConfigError
from mapguard.methods import get_method, list_methods


@pytest.mark.parametrize(
    ("module", "call", "expected"),
    [
        ("mapguard.methods._registry", "list_methods()", ["df-map", "map", "map-nft",
         "nft-weights", "ntl", "sf-map"]),
        ("mapguard.attacks._registry", "list_attacks()", ["adabn", "distill", "distill-arch",
         "extract", "fine-prune", "ftal", "ftll", "prune", "quantize", "regrow", "rtal",
         "target-ft", "unlearn-triggers", "wrk"]),
        ("mapguard.data._registry", "list_domains()", ["mnist", "mnistm", "optdigits",
         "svhnlike", "syn"]),
        ("mapguard.models._registry", "list_models()", ["mobilenet_v3_small", "resnet18",
         "vgg11_bn", "vgg_small", "vgg_tiny"]),
    ],
)  # fmt: skip
def test_registries_hold_every_builtin_in_a_fresh_process(module, call, expected) -> None:
    name = call.split("(")[0]
    code = f"from {module} import {name}; print(sorted({call}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(expected)


def test_unknown_method_lists_the_valid_ones() -> None:
    valid = "df-map, map, map-nft, nft-weights, ntl"
    with pytest.raises(ConfigError, match=f"unknown method 'mpa'; choose one of: {valid}"):
        get_method("mpa")
    assert get_method("ntl").learns_mask is False and get_method("df-map").needs_target is False
    assert get_method("nft-weights").learns_mask is False  # it changes the weights
    assert set(list_methods()) >= {"map", "ntl", "sf-map", "df-map"}
