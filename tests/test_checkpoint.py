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


def _with_header(model, path, **changes):
    """A real checkpoint of ``model`` whose mapguard header fields are replaced by ``changes``
    (values are put in as given: JSON text for the JSON-typed fields)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    save_checkpoint(model, ModelMeta(arch="vgg_tiny"), path, force=True)
    with safe_open(str(path), framework="pt") as fh:
        header = json.loads(fh.metadata()["mapguard"])
    header.update(changes)
    save_file(load_file(str(path)), str(path), metadata={"mapguard": json.dumps(header)})
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arch": {"nested": "dict"}}, "arch must be a short string"),
        ({"mean": '"not a list"'}, "mean/std must be lists"),
        ({"mean": "[0.5, 0.5, NaN]"}, "finite numbers"),
        ({"extra": "[" * 100_000 + "]" * 100_000}, "extra is not JSON"),
        ({"classes": '["a", "b"]'}, "2 class names for 10 classes"),
        ({"num_classes": "6000000"}, r"num_classes 6000000 outside \[2, 100000\]"),
        ({"num_classes": "99999", "classes": "[" + ",".join(['"c"'] * 99999) + "]"},
         r"tensor '1\.\d+\.bias' has shape \[10\], .*needs \[99999\]"),
        ({"input_size": "[3, 32]"}, r"input_size \[3, 32\]"),
        ({"std": "[0.5, 0.0, 0.5]"}, "std"),
    ],
)  # fmt: skip
def test_crafted_metadata_is_one_clear_error(model, tmp_path, changes, message) -> None:
    path = _with_header(model, tmp_path / "crafted.pt", **changes)
    with pytest.raises(ModelFileError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_crafted_metadata_through_the_cli_is_exit_2_not_1(model, tmp_path) -> None:
    import subprocess
    import sys

    path = _with_header(model, tmp_path / "crafted.pt", extra="[" * 100_000 + "]" * 100_000)
    out = tmp_path / "attacked.pt"
    for args in (
        ["evaluate", str(path), "--data", "builtin:optdigits"],
        ["attack", str(path), "--kind", "ftal", "--data", "builtin:optdigits", "--out", str(out)],
    ):
        done = subprocess.run([sys.executable, "-m", "mapguard", *args], capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert "extra is not JSON" in done.stderr
    assert not out.exists()


def test_onnx_files_are_told_by_content_and_only_queried(tmp_path) -> None:
    """An ONNX file (any name) is a code format here: never loaded as a torch module; evaluate
    and verify query it in the isolated worker."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from mapguard.checkpoint import CODE_FORMATS, detect_format, load_any_model

    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
    )
    path = tmp_path / "model.bin"  # not named .onnx: the content decides
    onnx.save(helper.make_model(graph), str(path))
    assert detect_format(path) == "onnx" and "onnx" in CODE_FORMATS
    for unsafe in (False, True):
        with pytest.raises(ModelFileError, match="ONNX file: it has no torch weights"):
            load_any_model(path, allow_unsafe=unsafe)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage")
    assert detect_format(garbage) == "unknown"
