"""Query backends: loading self-describing files by content, refusing unsafe ones, probing
shape and classes, query accounting, and the transform / labels-only wrappers."""

from __future__ import annotations

import hashlib
import warnings

import pytest
import torch
from safetensors.torch import save_file

from verification._errors import SuspectError
from verification.backends import (
    LabelsOnly,
    ModuleBackend,
    QueryBackend,
    TransformedBackend,
    detect_suspect_format,
    load_suspect,
    state_digest,
)


class TinyNet(torch.nn.Module):
    """A real (tiny) CNN taking [N, 3, size, size] pixels in [0, 1]."""

    def __init__(self, num_classes: int = 10, size: int = 32) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * (size // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 4)
        return self.fc(h.flatten(1))


@pytest.fixture
def net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.rand(7, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def save_export(module, path, *, dynamic=True, size=32):
    example = (torch.rand(2, 3, size, size),)
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    torch.export.save(torch.export.export(module, example, dynamic_shapes=shapes), path)
    return path


def save_torchscript(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(module, torch.rand(2, 3, 32, 32)).save(str(path))
    return path


def expected_probs(net, x):
    with torch.no_grad():
        return torch.softmax(net(x), dim=1)


@pytest.mark.parametrize("dynamic", [True, False])
def test_torch_export_round_trip(net, batch, tmp_path, dynamic):
    path = save_export(net, tmp_path / "suspect.bin", dynamic=dynamic)  # extension irrelevant
    assert detect_suspect_format(path) == "torch.export"
    backend = load_suspect(path, num_classes=10)
    assert backend.fixed_batch == (None if dynamic else 2)
    assert backend.query_count == 2  # the probe
    out = backend.query(batch)  # 7 images: padded to the static batch of 2 when needed
    assert torch.allclose(out, expected_probs(net, batch), atol=1e-5)
    assert backend.query_count == 9 and backend.num_classes == 10
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert backend.digest == digest


def test_torchscript_round_trip(net, batch, tmp_path):
    path = save_torchscript(net, tmp_path / "model.pt2")  # misleading extension on purpose
    assert detect_suspect_format(path) == "torchscript"
    backend = load_suspect(path, labels_only=True)
    labels = backend.query(batch)
    assert labels.dtype == torch.int64 and labels.shape == (7,)
    assert torch.equal(labels, expected_probs(net, batch).argmax(dim=1))


def test_pickles_run_in_the_isolated_worker_and_in_process_only_with_the_flag(net, batch, tmp_path):
    # A pickle of torch's own classes unpickles in the worker: same answers, nothing in-process.
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()
    path = tmp_path / "model.pt"
    torch.save(plain, path)
    legacy = tmp_path / "legacy.pt"
    torch.save(plain, legacy, _use_new_zipfile_serialization=False)
    for p in (path, legacy):
        assert detect_suspect_format(p) == "pickle"
        backend = load_suspect(p)
        assert backend.isolation.startswith("isolated worker")
        assert torch.allclose(backend.query(batch), expected_probs(plain, batch), atol=1e-6)
        backend.close()
    # A class the worker cannot import fails there with one line; the flag loads it in-process.
    own = tmp_path / "own.pt"
    torch.save(net, own)
    with pytest.raises(SuspectError, match="isolated worker: ModuleNotFoundError") as info:
        load_suspect(own)
    assert "\n" not in str(info.value)
    backend = load_suspect(own, allow_unsafe_load=True)
    assert backend.isolation.startswith("UNSAFE LOAD")
    assert torch.allclose(backend.query(batch), expected_probs(net, batch), atol=1e-6)


def test_pickled_state_dict_is_not_a_model(net, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(SuspectError, match="holds a .*Dict.*not a model"):
        load_suspect(path, allow_unsafe_load=True)


def test_safetensors_points_to_the_mapguard_cli(net, tmp_path):
    path = tmp_path / "model.pt2"
    save_file(net.state_dict(), str(path))
    assert detect_suspect_format(path) == "safetensors"
    with pytest.raises(SuspectError, match="mapguard checkpoint; load it with the mapguard CLI"):
        load_suspect(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(SuspectError, match="does not exist"):
        load_suspect(tmp_path / "missing.pt2")
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(SuspectError, match="not a model file this verifier reads"):
        load_suspect(junk)
    corrupt = tmp_path / "corrupt.pt2"
    good = save_export(TinyNet(), tmp_path / "good.pt2").read_bytes()
    corrupt.write_bytes(good[: len(good) // 2])
    with pytest.raises(SuspectError):
        load_suspect(corrupt)


def test_input_size_mismatch(tmp_path):
    exported = save_export(TinyNet(size=64), tmp_path / "big.pt2", dynamic=False, size=64)
    with pytest.raises(SuspectError, match=r"takes input \[2, 3, 64, 64\].*\[N, 3, 32, 32\]"):
        load_suspect(exported)
    scripted = tmp_path / "small.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(TinyNet(size=28), torch.rand(2, 3, 28, 28)).save(str(scripted))
    with pytest.raises(SuspectError, match=r"fails on a \[2, 3, 32, 32\] float input"):
        load_suspect(scripted)


def test_class_count_mismatch(tmp_path):
    path = save_export(TinyNet(num_classes=5), tmp_path / "five.pt2")
    with pytest.raises(SuspectError, match="outputs 5 classes, the watermark has 10"):
        load_suspect(path, num_classes=10)
    assert load_suspect(path, num_classes=5).num_classes == 5


def test_module_backend_outputs_and_validation(net, batch):
    backend = ModuleBackend(net, batch_size=3)
    assert torch.allclose(backend.query(batch), expected_probs(net, batch), atol=1e-6)
    assert backend.query_count == 7
    with pytest.raises(SuspectError, match=r"shape \[N, 3, 32, 32\], got \[7, 32, 32\]"):
        backend.query(batch[:, 0])
    with pytest.raises(SuspectError, match="float tensor"):
        backend.query((batch * 255).to(torch.uint8))
    assert backend.query_count == 7  # failed queries are not counted
    bad = ModuleBackend(lambda x: x.mean(dim=(1, 2, 3)))
    with pytest.raises(SuspectError, match=r"must return logits \[N, C\], got \[2\]"):
        bad.probe()
    with pytest.raises(SuspectError, match="batch_size"):
        ModuleBackend(net, batch_size=0)


def test_state_digest_tracks_weights(net):
    before = state_digest(net)
    assert ModuleBackend(net).digest == before == state_digest(net)
    with torch.no_grad():
        net.fc.bias[0] += 1e-3
    assert state_digest(net) != before


def test_labels_only_and_transformed_views(net, batch):
    inner = ModuleBackend(net)
    labels = LabelsOnly(inner)
    assert torch.equal(labels.query(batch), expected_probs(net, batch).argmax(dim=1))
    flipped = TransformedBackend(inner, lambda x: x.flip(-1), name="hflip")
    out = flipped.query(batch)
    assert torch.allclose(out, expected_probs(net, batch.flip(-1)), atol=1e-6)
    assert flipped.query_count == 7 and labels.query_count == 7 and inner.query_count == 14
    assert flipped.digest == inner.digest and "hflip" in flipped.description


class LabelService(QueryBackend):
    """A remote-style backend that only ever answers labels."""

    def __init__(self, answer: int) -> None:
        super().__init__(digest="sha256:remote")
        self.answer = answer

    def predict(self, batch):
        return torch.full((batch.shape[0],), self.answer)


def test_label_backend_probe_checks_label_range():
    LabelService(3).probe(num_classes=10)
    with pytest.raises(SuspectError, match="label 12 outside the watermark's 10 classes"):
        LabelService(12).probe(num_classes=10)
