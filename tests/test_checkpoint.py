"""Checkpoint format: exact round trip, hash check, safe loading, atomic writes."""

from __future__ import annotations

import pickle

import pytest
import torch

from mapguard._errors import ModelFileError
from mapguard.checkpoint import (
    ModelMeta,
    detect_format,
    file_sha256,
    load_any_model,
    load_checkpoint,
    save_checkpoint,
)
from mapguard.models import create_model
from protocols.errors import OutputExistsError


@pytest.fixture()
def model():
    torch.manual_seed(1)
    return create_model("vgg_tiny").eval()


def test_round_trip_is_exact_and_byte_identical(model, tmp_path) -> None:
    meta = save_checkpoint(model, ModelMeta(arch="vgg_tiny", extra={"k": "v"}), tmp_path / "a.pt")
    save_checkpoint(model, ModelMeta(arch="vgg_tiny", extra={"k": "v"}), tmp_path / "b.pt")
    assert file_sha256(tmp_path / "a.pt") == file_sha256(tmp_path / "b.pt")
    loaded, meta2 = load_checkpoint(tmp_path / "a.pt")
    assert meta2 == meta and meta2.extra == {"k": "v"}
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))


def test_edited_weights_fail_the_hash_check(model, tmp_path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(model, ModelMeta(arch="vgg_tiny"), path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_checkpoint(path)


def test_existing_output_needs_force(model, tmp_path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(model, ModelMeta(arch="vgg_tiny"), path)
    with pytest.raises(OutputExistsError, match="--force"):
        save_checkpoint(model, ModelMeta(arch="vgg_tiny"), path)
    save_checkpoint(model, ModelMeta(arch="vgg_tiny"), path, force=True)


def test_pickle_refused_unless_unsafe(model, tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save(model, path)
    assert detect_format(path) == "pickle"
    with pytest.raises(ModelFileError, match="runs code from the file.*--unsafe-load"):
        load_any_model(path)
    loaded, meta = load_any_model(path, allow_unsafe=True)
    assert meta is None and isinstance(loaded, torch.nn.Module)


def test_raw_pickle_refused(tmp_path) -> None:
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match="pickle"):
        load_any_model(path)


def test_export_and_torchscript_need_the_unsafe_flag_in_process(model, tmp_path) -> None:
    x = torch.rand(2, 3, 32, 32)
    ts = tmp_path / "m.ts"
    torch.jit.trace(model, x).save(str(ts))
    pt2 = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(pt2))
    assert detect_format(ts) == "torchscript" and detect_format(pt2) == "export"
    for path in (ts, pt2):
        with pytest.raises(ModelFileError, match="runs code from the file"):
            load_any_model(path)
        loaded, meta = load_any_model(path, allow_unsafe=True)
        assert meta is None
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"PK\x03\x04garbage"])
def test_corrupt_files_give_clear_error(content: bytes, tmp_path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ModelFileError):
        load_any_model(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        load_any_model(tmp_path / "nope.pt")


def test_truncated_checkpoint(model, tmp_path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(model, ModelMeta(arch="vgg_tiny"), path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError):
        load_checkpoint(path)
