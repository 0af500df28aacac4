"""Real malicious model files for the untrusted-suspect tests (issue 11), built in the tests:
``.pt2`` archives whose pickles run a shell command, TorchScript that maps a marker file, ONNX
models that read external data or use a custom-op domain. Loaded by ``tests/conftest.py``
(fixture ``malicious``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch


class _System:
    """Unpickles to ``os.system(command)``: runs a shell command when loaded."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _SideEffectThen:
    """Unpickles to ``value`` after running ``command`` (the file still looks benign)."""

    def __init__(self, command: str, value) -> None:
        self.command, self.value = command, value

    def __reduce__(self):
        import operator

        return (operator.getitem, ((_System(self.command), self.value), 1))


def _rewrite_zip(path: Path, replace) -> None:
    """Rewrite the zip at ``path``: ``replace(name, data) -> data`` for every entry."""
    import io
    import zipfile

    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as dst:
        for info, data in entries:
            dst.writestr(info, replace(info.filename, data))
    path.write_bytes(buf.getvalue())


def _torch_bytes(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class MaliciousFiles:
    """Builders of model files that run code when loaded; each touches ``marker``."""

    @staticmethod
    def export(model: torch.nn.Module, path: Path) -> Path:
        x = torch.rand(4, 3, 32, 32)
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))
        return path

    @classmethod
    def pt2_sample_inputs(cls, model: torch.nn.Module, path: Path, marker: Path) -> Path:
        """A ``.pt2`` whose sample-inputs pickle runs ``touch marker`` (and still loads)."""
        cls.export(model, path)
        evil = _torch_bytes(_SideEffectThen(f"touch {marker}", ((torch.zeros(4, 3, 32, 32),), {})))
        _rewrite_zip(path, lambda n, d: evil if "/data/sample_inputs/" in n else d)
        return path

    @classmethod
    def pt2_weights(cls, model: torch.nn.Module, path: Path, marker: Path) -> Path:
        """A ``.pt2`` whose first weight is a pickle that runs ``touch marker`` (correct value)."""
        import json

        cls.export(model, path)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        found = {}

        def replace(name: str, data: bytes) -> bytes:
            if name.endswith("model_weights_config.json"):
                config = json.loads(data)
                fqn, entry = next(iter(config["config"].items()))
                entry["use_pickle"] = True
                found["fqn"], found["file"] = fqn, entry["path_name"]
                return json.dumps(config).encode()
            return data

        _rewrite_zip(path, replace)
        weight = torch.nn.Parameter(state[found["fqn"]])
        evil = _torch_bytes(_SideEffectThen(f"touch {marker}", weight))
        _rewrite_zip(path, lambda n, d: evil if n.endswith("/weights/" + found["file"]) else d)
        return path

    @staticmethod
    def torchscript_setstate(model: torch.nn.Module, path: Path, marker: Path) -> Path:
        """TorchScript whose ``__setstate__`` calls ``torch.from_file(marker, shared=True)``
        (``model``'s last linear layer as a classifier of flattened pixels)."""
        scripted = torch.jit.script(_FromFileOnLoad(model, str(marker)))
        scripted.save(str(path))
        return path

    @staticmethod
    def torchscript_forward(model: torch.nn.Module, path: Path, marker: Path) -> Path:
        """TorchScript whose ``forward`` calls ``torch.from_file(marker, shared=True)``."""
        traced = torch.jit.trace(model.eval(), torch.rand(2, 3, 32, 32))
        scripted = torch.jit.script(_FromFileInForward(traced, str(marker)))
        scripted.save(str(path))
        return path

    @staticmethod
    def onnx_external_data(path: Path, location: str, *, nested: bool = False) -> Path:
        """An ONNX classifier of flattened pixels whose bias (10 float32, 40 bytes) is external
        data read from ``location`` (a path: ``../../etc/passwd``-style, absolute, or next to
        the model); with ``nested``, the tensor sits in a graph inside an ``If`` node."""
        from onnx import TensorProto

        bias = TensorProto(name="B", data_type=TensorProto.FLOAT, dims=[10])
        bias.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "40")):
            bias.external_data.add(key=key, value=value)
        return _onnx_classifier(path, bias, nested=nested)

    @staticmethod
    def onnx_custom_domain(path: Path, domain: str = "evil.custom") -> Path:
        """An ONNX classifier whose last node is in a custom-op ``domain`` (native code)."""
        from onnx import TensorProto, helper

        bias = helper.make_tensor("B", TensorProto.FLOAT, [10], [0.0] * 10)
        return _onnx_classifier(path, bias, domain=domain)


def _onnx_classifier(path: Path, bias, *, nested: bool = False, domain: str = "") -> Path:  # noqa: ANN001
    """``Flatten -> Gemm(W, bias)`` on ``[N, 3, 32, 32]`` pixels, 10 classes."""
    from onnx import TensorProto, helper

    weight = helper.make_tensor("W", TensorProto.FLOAT, [3 * 32 * 32, 10], [0.001] * 30720)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    opsets = [helper.make_opsetid("", 20)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    flat = helper.make_node("Flatten", ["x"], ["f"])
    gemm = helper.make_node("Gemm", ["f", "W", "B"], ["y"], domain=domain)
    if not nested:
        graph = helper.make_graph([flat, gemm], "g", [x], [y], [weight, bias])
    else:  # the external tensor inside both branches of an If
        inner_y = helper.make_tensor_value_info("B_out", TensorProto.FLOAT, [10])
        branch = helper.make_graph(
            [helper.make_node("Constant", [], ["B_out"], value=bias)], "b", [], [inner_y]
        )
        cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
        pick = helper.make_node("If", ["c"], ["B"], then_branch=branch, else_branch=branch)
        graph = helper.make_graph([flat, pick, gemm], "g", [x], [y], [weight, cond])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    path.write_bytes(model.SerializeToString())
    return path


class _FromFileOnLoad(torch.nn.Module):
    """A linear classifier whose unpickling (``__setstate__``) maps ``marker`` shared."""

    def __init__(self, model: torch.nn.Module, marker: str) -> None:
        super().__init__()
        linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        self.weight = linear.weight.detach().clone()
        self.bias = linear.bias.detach().clone()
        self.marker = marker
        self.mapped = torch.zeros(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.t() + self.bias

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool, torch.Tensor, torch.Tensor]:
        return (self.marker, self.training, self.weight, self.bias)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool, torch.Tensor, torch.Tensor]) -> None:
        self.marker = state[0]
        self.training = state[1]
        self.weight = state[2]
        self.bias = state[3]
        self.mapped = torch.from_file(self.marker, shared=True, size=4)  # kept: not dead code


class _FromFileInForward(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, marker: str) -> None:
        super().__init__()
        self.inner = inner
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mapped = torch.from_file(self.marker, shared=True, size=4)
        return self.inner(x) + mapped[:0].sum()  # used, so TorchScript keeps the call
