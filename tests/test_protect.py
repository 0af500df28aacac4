"""``mapguard protect``: outputs, the plain-PyTorch export, bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from mapguard._cli import cli
from mapguard.checkpoint import ModelMeta, file_sha256, load_checkpoint, save_checkpoint
from mapguard.masking import apply_mask, load_mask
from mapguard.models import create_model, register_model

QUICK = ["-o", "max_steps_per_epoch=4", "--epochs", "1", "--batch-size", "32", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def protected(tiny_checkpoint, tmp_path_factory):
    """One CLI run writing every output."""
    d = tmp_path_factory.mktemp("protect")
    paths = {k: d / f"{k}" for k in ("protected.pt", "mask.bin", "metrics.json", "protected.pt2")}
    res = invoke(
        "protect", tiny_checkpoint, "--source", "builtin:mnist", "--target", "builtin:mnistm",
        "--out", paths["protected.pt"], "--mask-out", paths["mask.bin"],
        "--metrics-out", paths["metrics.json"], "--export", paths["protected.pt2"],
        "-o", "lr=0.2", *QUICK,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return paths, res.output


def test_outputs_are_consistent(tiny_checkpoint, protected):
    paths, output = protected
    original, _ = load_checkpoint(tiny_checkpoint)
    model, meta = load_checkpoint(paths["protected.pt"])
    mask = load_mask(paths["mask.bin"])
    assert meta.arch == "vgg_tiny" and meta.extra["method"] == "map"
    assert meta.extra["mask_sha256"] == file_sha256(paths["mask.bin"])
    assert json.loads(meta.extra["targets"]) == ["builtin:mnistm"]
    assert float(meta.extra["pruned_fraction"]) == pytest.approx(mask.pruned_fraction, abs=1e-6)
    rebuilt = apply_mask(original, mask)  # the mask file reproduces the protected weights
    assert all(
        torch.equal(a, b)
        for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values())
    )
    assert "target builtin:mnistm" in output and "ST-D" in output
    assert "masked 5 layers, " in output and "(Conv2d 3, Linear 2)" in output


def test_metrics_json_reports_every_domain(protected):
    doc = json.loads(protected[0]["metrics.json"].read_text())
    m = doc["metrics"]
    assert doc["method"] == "map" and doc["schema_version"] == "1"
    assert set(m["targets"]) == {"builtin:mnistm"}
    assert set(m["others"]) == {"builtin:optdigits", "builtin:svhnlike", "builtin:syn"}
    for row in [*m["targets"].values(), *m["others"].values()]:
        assert row["drop"] == pytest.approx(row["before"] - row["after"])
    assert m["source_drop"] == pytest.approx(m["source_before"] - m["source_after"])
    assert 0 < m["pruned_fraction"] < 1 and doc["config"]["max_steps_per_epoch"] == 4
    assert doc["mask_sha256"] == file_sha256(protected[0]["mask.bin"])
    info = doc["method_info"]
    assert info["world_size"] == 1 and [h["epoch"] for h in info["history"]] == [1]
    mask = load_mask(protected[0]["mask.bin"])
    rows = doc["masked_layers"]
    assert [r["name"] for r in rows] == [layer.name for layer in mask.layers]
    assert sum(r["num_weights"] for r in rows) == mask.num_weights
    pruned = sum(r["pruned_fraction"] * r["num_weights"] for r in rows) / mask.num_weights
    assert pruned == pytest.approx(m["pruned_fraction"], abs=1e-6)


def test_export_runs_with_plain_pytorch_only(protected, tmp_path):
    paths = protected[0]
    model, _ = load_checkpoint(paths["protected.pt"])
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    torch.save({"x": x, "expected": expected}, tmp_path / "io.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["mapguard"] = None  # any attempt to import mapguard now fails
        import torch
        io = torch.load({str(tmp_path / "io.pt")!r}, weights_only=True)
        m = torch.export.load({str(paths["protected.pt2"])!r}).module()
        out = m(io["x"])
        assert torch.allclose(out, io["expected"], atol=1e-5), (out - io["expected"]).abs().max()
        assert m(io["x"][:1]).shape == (1, 10)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_ntl_method_runs_and_refuses_a_mask_output(tiny_checkpoint, tmp_path):
    out = tmp_path / "ntl.pt"
    res = invoke(
        "protect", tiny_checkpoint, "--source", "builtin:mnist", "--target", "builtin:mnistm",
        "--method", "ntl", "--out", out, *QUICK,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert load_checkpoint(out)[1].extra["method"] == "ntl"
    assert "masked " not in res.output
    res = invoke(
        "protect", tiny_checkpoint, "--source", "builtin:mnist", "--target", "builtin:mnistm",
        "--method", "ntl", "--out", tmp_path / "x.pt", "--mask-out", tmp_path / "m.bin", *QUICK,
    )  # fmt: skip
    assert res.exit_code == 2 and "learns no mask" in res.output


class _NoLayers(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool1d(x.flatten(1).unsqueeze(1), 10).squeeze(1)


@register_model("test_no_conv_linear")
def _no_layers(*, num_classes: int) -> nn.Module:
    return _NoLayers()


def _checkpoint(tmp_path, name, model, arch, num_classes=10):
    path = tmp_path / name
    save_checkpoint(
        model,
        ModelMeta(arch=arch, num_classes=num_classes, classes=tuple(map(str, range(num_classes)))),
        path,
    )
    return path


def _nan_model(tiny_model):
    import copy

    m = copy.deepcopy(tiny_model)
    with torch.no_grad():
        m[1][0].weight[0, 0, 0, 0] = float("nan")
    return m


@pytest.mark.parametrize(
    "case, match",
    [
        ("same", "same data"),
        ("classes", "5 classes"),
        ("no-layers", "no Conv/Linear"),
        ("nan", "NaN"),
        ("method", "unknown method 'mapp'"),
        ("option", "unknown mask option"),
        ("keep-is-target", "both as --keep and as --target"),
        ("same-path", "both name"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(case, match, tiny_checkpoint, tiny_model, tmp_path):
    model = tiny_checkpoint
    args = ["--source", "builtin:mnist", "--target", "builtin:mnistm"]
    extra = []
    if case == "same":
        args = ["--source", "builtin:mnist", "--target", "builtin:mnist"]
    elif case == "classes":
        model = _checkpoint(
            tmp_path, "c5.pt", create_model("vgg_tiny", num_classes=5), "vgg_tiny", 5
        )
    elif case == "no-layers":
        model = _checkpoint(
            tmp_path, "nl.pt", create_model("test_no_conv_linear"), "test_no_conv_linear"
        )
    elif case == "nan":
        model = _checkpoint(tmp_path, "nan.pt", _nan_model(tiny_model), "vgg_tiny")
    elif case == "method":
        extra = ["--method", "mapp"]
    elif case == "option":
        extra = ["-o", "keep_wieght=3"]
    elif case == "keep-is-target":
        extra = ["--keep", "builtin:mnistm"]
    elif case == "same-path":
        extra = ["--metrics-out", tmp_path / "out" / "p.pt"]
    (tmp_path / "out").mkdir()
    res = invoke("protect", model, *args, "--out", tmp_path / "out" / "p.pt",
                 "--mask-out", tmp_path / "out" / "m.bin", *extra, *QUICK)  # fmt: skip
    assert res.exit_code == 2, res.output
    assert match in res.output and res.output.startswith("mapguard: error:")
    assert len(res.output.strip().splitlines()) == 1
    assert list((tmp_path / "out").iterdir()) == []


def test_existing_output_is_refused_before_any_work(tiny_checkpoint, tmp_path):
    out = tmp_path / "p.pt"
    out.write_bytes(b"keep me")
    res = invoke("protect", tiny_checkpoint, "--source", "builtin:mnist", "--target",
                 "builtin:does-not-matter", "--out", out)  # fmt: skip
    assert res.exit_code == 2 and "exists" in res.output
    assert out.read_bytes() == b"keep me"


RECORDED = []


def _record(inputs):
    from mapguard.methods import MethodOutput

    RECORDED.append(inputs)
    return MethodOutput(model=inputs.model, config={"echo": True}, seconds=0.0)


def test_a_registered_method_gets_every_role(tiny_checkpoint, tmp_path):
    from mapguard.methods import list_methods, register_method
    from mapguard.protect import protect

    if "test-record" not in list_methods():
        register_method("test-record", description="records its inputs", learns_mask=False)(_record)
    report = protect(
        tiny_checkpoint, source="builtin:mnist", targets=["builtin:mnistm", "builtin:syn"],
        keep=["builtin:optdigits"], method="test-record", out=tmp_path / "p.pt", seed=7,
        options={"anything": 1}, progress=False,
    )  # fmt: skip
    inputs = RECORDED[-1]
    assert inputs.source.name == "builtin:mnist" and inputs.source.split == "train"
    assert [t.name for t in inputs.targets] == ["builtin:mnistm", "builtin:syn"]
    assert [k.name for k in inputs.keep] == ["builtin:optdigits"] and inputs.seed == 7
    m = report.metrics
    assert set(m.targets) == {"builtin:mnistm", "builtin:syn"}
    assert set(m.others) == {"builtin:optdigits", "builtin:svhnlike"}
    assert m.st_d == 0.0 and m.source_drop == 0.0  # an unchanged model degrades nothing
    assert load_checkpoint(tmp_path / "p.pt")[1].extra["method"] == "test-record"


def test_a_64_pixel_model_is_protected_and_exported_at_64(checkpoint_64, tmp_path):
    out, export = tmp_path / "p.pt", tmp_path / "p.pt2"
    res = invoke("protect", checkpoint_64, "--source", "builtin:mnist", "--target",
                 "builtin:mnistm", "--out", out, "--export", export, *QUICK)  # fmt: skip
    assert res.exit_code == 0, res.output
    model, meta = load_checkpoint(out)
    assert meta.input_size == (3, 64, 64) and meta.extra["method"] == "map"
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(torch.export.load(str(export)).module()(x), model(x), atol=1e-4)


def test_a_model_of_other_classes_is_measured_on_its_own_data_only(folders_64, tmp_path):
    arch = "test_only_64px"  # registered in conftest: refuses any side but 64
    torch.manual_seed(0)
    model = create_model(arch, num_classes=3)
    meta = ModelMeta(arch=arch, num_classes=3, classes=("cat", "dog", "owl"),
                     input_size=(3, 64, 64))  # fmt: skip
    save_checkpoint(model.eval(), meta, tmp_path / "m.pt")
    res = invoke("protect", tmp_path / "m.pt", "--source", folders_64["src"], "--target",
                 folders_64["tgt"], "--out", tmp_path / "p.pt", "--metrics-out",
                 tmp_path / "metrics.json", *QUICK)  # fmt: skip
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert not metrics["others"]  # no built-in digit domain for a 3-class model
