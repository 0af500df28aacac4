"""A small Open Inference Protocol (KServe v2 REST) server for a model, on 127.0.0.1 in a thread.

What ``mapguard demo --remote`` serves the stolen copy with, and what the tests and the remote
benchmark build their servers on (tests/_oip_server.py adds faults on purpose). It speaks the
v2 REST protocol from the standard library: ``GET /v2/health/ready``, ``GET /v2/models/NAME``
(metadata: one FP32 input ``[-1, 3, S, S]``, one FP32 output ``[-1, C]``) and
``POST /v2/models/NAME/infer`` (``inputs[0]`` with ``shape``, ``datatype`` and flat or nested
``data``), answering the model's logits as FP32. ``kserve``'s own ``ModelServer`` is not used:
it pins protobuf 6 and psutil 5 and pulls in kubernetes, grpc and pandas.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import torch

__all__ = ["OipHandler", "OipServer"]

MAX_BODY = 256 * 2**20


class OipHandler(BaseHTTPRequestHandler):
    """The protocol; ``self.server.model_state`` holds the model and its description."""

    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def send_body(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, doc: object, headers: dict[str, str] | None = None) -> None:
        self.send_body(status, json.dumps(doc).encode(), headers)

    @property
    def state(self) -> Any:
        return self.server.model_state

    def authorized(self) -> bool:
        token = self.state.token
        if token is None or self.headers.get("Authorization") == f"Bearer {token}":
            return True
        self.send_json(401, {"error": "unauthorized"})
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/v2/health/ready":
            return self.send_json(200, {"ready": True})
        if not self.authorized():
            return None
        if self.path.rstrip("/") != f"/v2/models/{self.state.name}":
            return self.send_json(404, {"error": f"no model at {self.path}"})
        side, classes = self.state.side, self.state.num_classes
        return self.send_json(200, {
            "name": self.state.name, "versions": ["1"], "platform": "pytorch",
            "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 3, side, side]}],
            "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [-1, classes]}],
        })  # fmt: skip

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(min(int(self.headers.get("Content-Length", "0")), MAX_BODY))
        if not self.authorized():
            return None
        self.route(self.path.rstrip("/"), body)
        return None

    def route(self, path: str, body: bytes) -> None:
        """Answer a POST to ``path`` (subclasses add routes and faults)."""
        if path != f"/v2/models/{self.state.name}/infer":
            return self.send_json(404, {"error": f"no model at {self.path}"})
        try:
            logits = self.logits(body)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return self.send_json(400, {"error": f"bad request: {exc}"})
        return self.send_body(200, self.infer_body(logits))

    def logits(self, body: bytes) -> np.ndarray:
        """The model's logits for the request's tensor."""
        tensor = json.loads(body)["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        with torch.inference_mode(), self.state.lock:
            out = self.state.model(torch.from_numpy(x)).float().numpy()
            self.state.images += x.shape[0]
            self.state.requests += 1
        return out

    def infer_body(self, logits: np.ndarray) -> bytes:
        """The v2 answer: one FP32 output tensor, flat data (shortest float32 decimals)."""
        doc = {"model_name": self.state.name, "outputs": [{
            "name": "output-0", "shape": list(logits.shape), "datatype": "FP32",
            "data": "@DATA@"}]}  # fmt: skip
        data = ",".join(logits.astype(np.float32).reshape(-1).astype(str).tolist())
        return json.dumps(doc).replace('"@DATA@"', f"[{data}]").encode()


class _State:
    def __init__(self, model: Callable, name: str, side: int, num_classes: int, token: str | None):
        self.model, self.name, self.side, self.num_classes = model, name, side, num_classes
        self.token = token
        self.lock = threading.Lock()
        self.images = self.requests = 0


class OipServer:
    """``with OipServer(model, side=32, num_classes=10) as server: server.url``.

    Args:
        model: Maps float32 ``[N, 3, S, S]`` pixels in ``[0, 1]`` to logits.
        side, num_classes: What the metadata announces.
        name: The model's name in the URL.
        token: Require ``Authorization: Bearer <token>`` (None: no credentials).
        handler: The request handler class (:class:`OipHandler` or a subclass).
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        *,
        side: int,
        num_classes: int,
        name: str = "suspect",
        token: str | None = None,
        handler: type[OipHandler] = OipHandler,
    ) -> None:
        self.state = _State(model, name, side, num_classes, token)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.model_state = self.state  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.base}/v2/models/{self.state.name}/infer"

    def __enter__(self) -> OipServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
