"""The bit-packed mask file: round trip, size bound, corruption, baking into a model."""

from __future__ import annotations

import pytest
import torch

from mapguard._errors import ModelFileError
from mapguard.checkpoint import weights_digest
from mapguard.masking import Mask, MaskLayer, apply_mask, load_mask, maskable_weights, save_mask
from mapguard.masking._parametrize import score_shape
from mapguard.models import create_model
from protocols.errors import OutputExistsError


def random_mask(model, *, p_keep=0.5, granularity="weight", seed=0) -> Mask:
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    layers = []
    for name in maskable_weights(model):
        shape = tuple(params[name].shape)
        bits = torch.rand(score_shape(shape, granularity), generator=gen) < p_keep
        layers.append(MaskLayer(name=name, weight_shape=shape, bits=bits))
    return Mask(
        granularity=granularity,
        layers=tuple(layers),
        weights_sha256=weights_digest(model.state_dict()),
    )


@pytest.mark.parametrize("granularity", ["weight", "channel"])
@pytest.mark.parametrize("p_keep", [0.5, 0.98, 1.0])
def test_round_trip_is_exact(granularity, p_keep):
    mask = random_mask(create_model("vgg_tiny"), p_keep=p_keep, granularity=granularity)
    back = Mask.from_bytes(mask.to_bytes())
    assert back.equals(mask) and back.agreement(mask) == 1.0
    for a, b in zip(mask.layers, back.layers):
        assert a.name == b.name and a.weight_shape == b.weight_shape and torch.equal(a.bits, b.bits)
    assert back.pruned_fraction == pytest.approx(mask.pruned_fraction)
    assert back.weights_sha256 == mask.weights_sha256


@pytest.mark.parametrize("arch", ["vgg_tiny", "vgg_small"])
def test_size_is_at_most_1_05_bits_per_weight_including_header(arch):
    # p_keep = 0.5 is incompressible: the worst case, stored as raw packed bits
    mask = random_mask(create_model(arch), p_keep=0.5)
    size_bits = len(mask.to_bytes()) * 8
    assert size_bits <= 1.05 * mask.num_weights, (size_bits, mask.num_weights)
    # a typical learned mask (2% pruned) compresses far below one bit per weight
    sparse = random_mask(create_model(arch), p_keep=0.98)
    assert len(sparse.to_bytes()) * 8 < 0.3 * sparse.num_weights


def test_file_round_trip_atomic_and_no_overwrite(tmp_path):
    mask = random_mask(create_model("vgg_tiny"))
    path = tmp_path / "mask.bin"
    digest = save_mask(mask, path)
    assert load_mask(path).equals(mask) and digest == mask.sha256
    with pytest.raises(OutputExistsError):
        save_mask(mask, path)
    assert [p.name for p in tmp_path.iterdir()] == ["mask.bin"]  # no temp file left behind


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b"XXXXXXXX" + b[8:],  # magic
        lambda b: b[:-1],  # truncated payload
        lambda b: b[:14] + bytes([b[14] ^ 0xFF]) + b[15:],  # corrupt compressed header
        lambda b: b[:10],  # truncated header length
    ],
)
def test_corrupt_files_raise_model_file_error(mutate):
    data = random_mask(create_model("vgg_tiny"), p_keep=0.5).to_bytes()
    with pytest.raises(ModelFileError):
        Mask.from_bytes(mutate(data))


def test_apply_mask_multiplies_exactly_and_checks_the_model():
    torch.manual_seed(0)
    model = create_model("vgg_tiny").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mask = random_mask(model, p_keep=0.7)
    out = apply_mask(model, mask)
    for layer in mask.layers:
        w0, w1 = (
            dict(model.named_parameters())[layer.name],
            dict(out.named_parameters())[layer.name],
        )
        assert torch.equal(w1, w0 * layer.bits)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    other = create_model("vgg_tiny")
    with pytest.raises(ModelFileError, match="different model"):
        apply_mask(other, mask)
    with pytest.raises(ModelFileError, match="does not fit"):
        apply_mask(create_model("vgg_small"), mask, check_digest=False)
