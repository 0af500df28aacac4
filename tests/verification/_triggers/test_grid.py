"""Geometry v2 (docs/TRIGGERS.md section 4a): triggers laid out on a cell grid.

Provenance of the fingerprints: computed by this implementation when geometry v2 was introduced
(and written into docs/TRIGGERS.md, which this test reads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from verification._errors import TriggerError
from verification.triggers import get_trigger_family, public_params, random_secret

DOC = (Path(__file__).resolve().parents[3] / "docs" / "TRIGGERS.md").read_text(encoding="utf-8")
COUNT = bytes(range(32))
EMBED = {"min_size": 8, "max_size": 10, "num_classes": 10}

VECTORS = [
    ("targeted_patch", {**EMBED, "image_size": 224, "grid": 32},
     {"size": 10, "row": 8, "col": 4, "target": 2},
     "sha256:387625622e8b01ad7e438bf8f33c91803bbeb7985e9eec8964bdd83810c0f488"),
    ("blend", {"image_size": 100, "grid": 10}, {"support_pixels": 23},
     "sha256:fcb058056412845f3ebc49234d1bcdf2435b3847d4f354fe0f8c618ca2bd6179"),
]  # fmt: skip


@pytest.mark.parametrize(("family", "params", "details", "fingerprint"), VECTORS)
def test_worked_examples(family, params, details, fingerprint) -> None:
    t = get_trigger_family(family).derive(COUNT, params=params)
    assert dict(t.details) == details
    assert t.fingerprint() == fingerprint
    assert fingerprint in DOC


@pytest.mark.parametrize("family", ["patch", "targeted_patch", "blend"])
@pytest.mark.parametrize(("size", "grid"), [(224, 32), (100, 32), (64, 7), (33, 32)])
def test_pixels_are_the_v1_lattice_mapped_by_nearest_cell(family, size, grid) -> None:
    fam = get_trigger_family(family)
    extra = EMBED if family == "targeted_patch" else {}
    if family != "blend":
        extra = {**extra, "min_size": 2, "max_size": 3} if grid < 8 else extra
    for i in range(3):
        secret = random_secret(np.random.default_rng(i))
        cells = fam.derive(secret, params={**extra, "image_size": grid})
        pixels = fam.derive(secret, params={**extra, "image_size": size, "grid": grid})
        assert dict(pixels.details) == dict(cells.details)
        # plain re-derivation: pixel i takes cell floor(i * grid / size)
        index = [i * grid // size for i in range(size)]
        for mine, theirs in ((pixels.alpha_map, cells.alpha_map), (pixels.pattern, cells.pattern)):
            expect = theirs.numpy()[:, index][:, :, index]
            assert np.array_equal(mine.numpy(), expect)


@pytest.mark.parametrize("family", ["patch", "targeted_patch", "blend"])
def test_grid_equal_to_the_side_is_v1(family) -> None:
    fam = get_trigger_family(family)
    secret = random_secret(np.random.default_rng(5))
    v1 = fam.derive(secret)
    v2 = fam.derive(secret, params={"grid": 32})
    assert v1.fingerprint() == v2.fingerprint()
    assert torch.equal(v1.alpha_map, v2.alpha_map)


def test_grid_zero_is_not_committed() -> None:
    fam = get_trigger_family("targeted_patch")
    assert "grid" not in public_params(fam.make_params(EMBED))
    assert "grid" not in fam.derive(COUNT, params=EMBED).params
    assert public_params(fam.make_params({**EMBED, "image_size": 64, "grid": 32}))["grid"] == 32


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"image_size": 32, "grid": 33}, "grid must be an integer in \\[0, 32\\]"),
        ({"image_size": 224, "grid": 6}, "max_size must be an integer in \\[4, 6\\]|min_size"),
        ({"image_size": 224, "grid": -1}, "grid"),
        ({"image_size": 224, "grid": True}, "grid"),
    ],
)
def test_bad_grids_are_refused(params, message) -> None:
    with pytest.raises(TriggerError, match=message):
        get_trigger_family("patch").make_params({**params, "min_size": 4, "max_size": 8})


def test_blend_beyond_77_pixels_needs_a_grid() -> None:
    fam = get_trigger_family("blend")
    with pytest.raises(TriggerError, match="image_size"):
        fam.make_params({"image_size": 224})
    with pytest.raises(TriggerError, match="grid"):
        fam.make_params({"image_size": 224, "grid": 78})
    assert fam.derive(COUNT, params={"image_size": 224, "grid": 77}).alpha_map.shape == (
        1,
        224,
        224,
    )
