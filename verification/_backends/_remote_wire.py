"""What goes over the wire to a remote suspect: request bodies and the answers read back.

Two formats: the Open Inference Protocol (KServe v2 / Triton REST; the tensor's name, datatype
and layout from the model's metadata) and a request template for other JSON APIs
(``mapguard-request-template-v1``, docs/FORMATS.md). Bodies are built deterministically (the same
images give the same bytes), so a resumed run can match its requests against the query log.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from verification._errors import SuspectError

__all__ = ["OipWire", "TemplateWire", "Wire", "answer_tensor", "json_pointer", "parse_json"]

_FLOAT_TYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}
_INT_TYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
#: A row is a probability distribution when it is non-negative and sums to 1 within this.
_SUM_TOLERANCE = 1e-3


def parse_json(body: bytes, what: str) -> Any:
    """``body`` as JSON, or one clear error (truncated, not UTF-8, not JSON)."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SuspectError(f"{what} is not valid JSON ({exc}; {len(body)} bytes)") from None


def _numbers(arr: np.ndarray, dtype: type) -> np.ndarray:
    """Shortest round-trip decimal strings of ``arr`` in ``dtype`` (the bytes are deterministic)."""
    levels = np.rint(arr * 255.0).clip(0, 255).astype(np.int64)
    if np.issubdtype(dtype, np.integer):
        return _LEVELS_INT[levels]
    values = arr.astype(dtype)
    if dtype is not np.float32:
        return values.astype(str)
    out = _LEVELS_F32[levels]  # most pixels are k / 255: their strings are looked up
    other = values != _LEVELS_F32_VALUES[levels]
    if other.any():
        out[other] = values[other].astype(str)
    return out


_LEVELS_F32_VALUES = (np.arange(256) / 255.0).astype(np.float32)
_LEVELS_F32 = _LEVELS_F32_VALUES.astype(str).astype(object)
_LEVELS_INT = np.arange(256).astype(str).astype(object)


def _nested(strings: np.ndarray) -> str:
    if strings.ndim == 1:
        return "[" + ",".join(strings.tolist()) + "]"
    return "[" + ",".join(_nested(s) for s in strings) + "]"


def answer_tensor(values: Any, n: int, kind: str, what: str) -> torch.Tensor:
    """Answers for ``n`` images as probabilities ``[n, C]`` (float32) or labels ``[n]`` (int64).

    ``kind``: ``"auto"`` (rows that are distributions are probabilities, other rows logits,
    which get a softmax; integers are labels), ``"probabilities"``, ``"logits"`` or ``"labels"``.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise SuspectError(f"{what} is not a list of numbers") from None
    if arr.ndim == 2 and arr.shape[0] == n and kind in ("auto", "probabilities", "logits"):
        if not np.isfinite(arr).all():
            raise SuspectError(f"{what} holds non-finite scores")
        scores = torch.from_numpy(arr.astype(np.float32))
        rows = arr.sum(axis=1)
        distribution = bool((arr >= 0).all() and np.all(np.abs(rows - 1) <= _SUM_TOLERANCE))
        if kind == "logits" or (kind == "auto" and not distribution):
            return torch.softmax(scores, dim=1)
        if not distribution:
            raise SuspectError(f"{what}: rows are not probability distributions")
        return scores
    if arr.ndim == 1 and arr.shape[0] == n and kind in ("auto", "labels"):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)) or (arr < 0).any():
            raise SuspectError(f"{what}: labels must be non-negative integers")
        return torch.from_numpy(arr.astype(np.int64))
    raise SuspectError(
        f"{what} has shape {list(arr.shape)} for {n} images; expected [{n}, classes] scores or "
        f"[{n}] labels"
    )


def json_pointer(doc: Any, pointer: str, what: str) -> Any:
    """The value at RFC 6901 ``pointer`` in ``doc``."""
    if pointer and not pointer.startswith("/"):
        raise SuspectError(f"JSON pointer {pointer!r} must start with '/'")
    value = doc
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise SuspectError(f"{what} has nothing at JSON pointer {pointer!r}")
    return value


class Wire(ABC):
    """One request format: images -> body bytes, body bytes -> answer tensor."""

    #: How the suspect was reached, recorded as the result's ``suspect.format``.
    name = ""
    content_type = "application/json"

    @abstractmethod
    def encode(self, batch: torch.Tensor) -> bytes:
        """The request body for ``batch`` (float32 ``[N, 3, H, W]`` in ``[0, 1]``)."""

    @abstractmethod
    def decode(self, body: bytes, n: int) -> torch.Tensor:
        """The answer to ``n`` images in ``body``."""

    def describe(self) -> dict[str, Any]:
        """What fixes the request bytes, for the query log's header."""
        return {"format": self.name}


class OipWire(Wire):
    """Open Inference Protocol v2 REST: one input tensor, the first usable output read back.

    Args:
        input_name: The input tensor's name (metadata ``inputs[0].name``).
        datatype: ``FP32`` (default), ``FP64``, ``FP16`` (pixels in ``[0, 1]``) or ``UINT8``
            (``round(255 * pixel)``).
        layout: ``NCHW`` or ``NHWC`` (metadata shape ``[-1, H, W, 3]``).
    """

    name = "open-inference-protocol"

    def __init__(self, *, input_name: str = "input-0", datatype: str = "FP32", layout="NCHW"):
        if datatype not in _FLOAT_TYPES and datatype != "UINT8":
            raise SuspectError(
                f"the model's input datatype {datatype!r} is not one this verifier sends "
                "(FP32, FP64, FP16, UINT8)"
            )
        self.input_name, self.datatype, self.layout = input_name, datatype, layout

    @classmethod
    def from_metadata(cls, meta: Any, input_shape: tuple[int, ...]) -> OipWire:
        """The wire format the model metadata (``GET /v2/models/NAME``) describes."""
        inputs = meta.get("inputs") if isinstance(meta, dict) else None
        if not inputs or not isinstance(inputs, list) or not isinstance(inputs[0], dict):
            return cls()
        first = inputs[0]
        shape = [int(d) for d in first.get("shape", []) if isinstance(d, int | float)]
        layout = "NCHW"
        if len(shape) == 4 and shape[-1] == input_shape[0] and shape[1] != input_shape[0]:
            layout = "NHWC"
        want = input_shape if layout == "NCHW" else (*input_shape[1:], input_shape[0])
        if len(shape) == 4 and any(d not in (-1, w) for d, w in zip(shape[1:], want, strict=True)):
            raise SuspectError(
                f"the model's metadata says its input is {shape}; the watermark's images are "
                f"[N, {', '.join(map(str, input_shape))}]"
            )
        return cls(
            input_name=str(first.get("name", "input-0")),
            datatype=str(first.get("datatype", "FP32")),
            layout=layout,
        )

    def encode(self, batch: torch.Tensor) -> bytes:
        arr = batch.detach().cpu().float().numpy()
        if self.layout == "NHWC":
            arr = arr.transpose(0, 2, 3, 1)
        dtype = _FLOAT_TYPES.get(self.datatype, np.uint8)
        data = ",".join(_numbers(arr.reshape(-1), dtype).tolist())
        head = {"name": self.input_name, "shape": list(arr.shape), "datatype": self.datatype}
        text = json.dumps(head, separators=(",", ":"))[:-1] + ',"data":[' + data + "]}"
        return ('{"inputs":[' + text + "]}").encode("ascii")

    def decode(self, body: bytes, n: int) -> torch.Tensor:
        doc = parse_json(body, "the endpoint's answer")
        outputs = doc.get("outputs") if isinstance(doc, dict) else None
        if not isinstance(outputs, list) or not outputs:
            raise SuspectError("the endpoint's answer has no 'outputs' (Open Inference Protocol)")
        for out in outputs:
            if isinstance(out, dict) and out.get("datatype") == "BYTES":
                continue
            if isinstance(out, dict) and isinstance(out.get("shape"), list):
                return self._output(out, n)
        raise SuspectError("the endpoint's answer has no numeric output tensor")

    @staticmethod
    def _output(out: Mapping[str, Any], n: int) -> torch.Tensor:
        shape = out["shape"]
        what = f"output {out.get('name', '?')!r}"
        try:
            arr = np.asarray(out.get("data"), dtype=np.float64).reshape(-1)
            size = math.prod(int(d) for d in shape)
        except (TypeError, ValueError):
            raise SuspectError(f"{what} of the endpoint's answer is not numeric") from None
        if size != arr.size:
            raise SuspectError(f"{what} has {arr.size} values for shape {shape}")
        kind = "labels" if out.get("datatype") in _INT_TYPES else "auto"
        if len(shape) == 2 and shape[1] == 1 and kind == "labels":
            shape = [shape[0]]
        return answer_tensor(arr.reshape([int(d) for d in shape]), n, kind, what)


_PLACEHOLDER = "$images"
_ENCODINGS = ("nested", "nested-uint8", "png-base64")


class TemplateWire(Wire):
    """Another JSON API, described by a ``mapguard-request-template-v1`` document.

    ``{"schema": "mapguard-request-template-v1", "body": {... "$images" ...},
    "images": {"encoding": "nested" | "nested-uint8" | "png-base64", "layout": "NCHW" | "NHWC"},
    "answer": {"pointer": "/predictions", "kind": "auto" | "probabilities" | "logits" |
    "labels"}}``: the string ``"$images"`` in ``body`` becomes the list of images; the answer is
    read at the JSON pointer.
    """

    name = "request-template"

    def __init__(self, template: Mapping[str, Any], *, source: str = "request template"):
        if not isinstance(template, Mapping) or template.get("schema") != (
            "mapguard-request-template-v1"
        ):
            raise SuspectError(f"{source} is not a mapguard-request-template-v1 document")
        images = template.get("images") or {}
        answer = template.get("answer") or {}
        self.encoding = images.get("encoding", "nested")
        self.layout = images.get("layout", "NCHW")
        self.pointer = answer.get("pointer", "")
        self.kind = answer.get("kind", "auto")
        checks = (
            ("images.encoding", self.encoding, _ENCODINGS),
            ("images.layout", self.layout, ("NCHW", "NHWC")),
            ("answer.kind", self.kind, ("auto", "probabilities", "logits", "labels")),
        )
        for field, value, allowed in checks:
            if value not in allowed:
                raise SuspectError(f"{source}: {field} {value!r}; choose {', '.join(allowed)}")
        body = json.dumps(template.get("body", _PLACEHOLDER), sort_keys=True, separators=(",", ":"))
        if body.count(json.dumps(_PLACEHOLDER)) != 1:
            raise SuspectError(f"{source}: 'body' must hold the string {_PLACEHOLDER!r} once")
        self.prefix, self.suffix = body.split(json.dumps(_PLACEHOLDER))
        self.digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
        if self.pointer and not str(self.pointer).startswith("/"):
            raise SuspectError(f"{source}: answer.pointer {self.pointer!r} must start with '/'")

    def describe(self) -> dict[str, Any]:
        return {"format": self.name, "template_sha256": self.digest}

    def encode(self, batch: torch.Tensor) -> bytes:
        arr = batch.detach().cpu().float().numpy()
        if self.encoding == "png-base64":
            items = ",".join(json.dumps(_png(img)) for img in arr)
            return (self.prefix + "[" + items + "]" + self.suffix).encode("ascii")
        if self.layout == "NHWC":
            arr = arr.transpose(0, 2, 3, 1)
        dtype = np.uint8 if self.encoding == "nested-uint8" else np.float32
        return (self.prefix + _nested(_numbers(arr, dtype)) + self.suffix).encode("ascii")

    def decode(self, body: bytes, n: int) -> torch.Tensor:
        doc = parse_json(body, "the endpoint's answer")
        values = json_pointer(doc, self.pointer, "the endpoint's answer")
        return answer_tensor(values, n, self.kind, f"the answer at {self.pointer or '/'!r}")


def _png(image: np.ndarray) -> str:
    """One ``[3, H, W]`` image in ``[0, 1]`` as base64 PNG (8 bits: pixels are rounded)."""
    from PIL import Image

    pixels = np.rint(image.transpose(1, 2, 0) * 255.0).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")
