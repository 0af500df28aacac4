"""A real Open Inference Protocol (KServe v2 REST) server on 127.0.0.1, for the remote tests.

``kserve`` itself is not installed here: it pins protobuf 6 and psutil 5 (the project's ONNX
stack has protobuf 7) and pulls in kubernetes, grpc and pandas. This server speaks the same
REST protocol from the standard library (``http.server`` in a thread): ``GET /v2/health/ready``,
``GET /v2/models/NAME`` (metadata) and ``POST /v2/models/NAME/infer`` with the v2 JSON tensor
encoding (``inputs[0]``: ``name``, ``shape``, ``datatype``, flat ``data``), answering the model's
logits as ``FP32``. ``faults`` makes it misbehave on purpose, one fault per inference request
in order (then it behaves): ``"500"``, ``"503"``, ``"429:S"`` (``Retry-After: S``),
``"sleep:S"`` (answers after S seconds: a client timeout), ``"truncated"``, ``"wrong-classes"``,
``"wrong-rows"``, ``"close"`` (drops the connection). ``POST /predict`` is another JSON API
(``{"instances": [NCHW images]}`` -> ``{"predictions": [probabilities]}``) for request
templates. ``noise`` adds fresh random noise to every answer (a nondeterministic endpoint);
``token`` requires ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import torch

MAX_BODY = 64 * 2**20


@dataclasses.dataclass
class ServerState:
    model: Callable[[torch.Tensor], torch.Tensor]
    name: str
    side: int
    num_classes: int
    faults: list[str] = dataclasses.field(default_factory=list)
    noise: float = 0.0
    token: str | None = None
    infer_requests: int = 0
    images: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    rng: np.random.Generator = dataclasses.field(default_factory=lambda: np.random.default_rng(0))


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, doc: object, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(doc).encode(), headers)

        def _authorized(self) -> bool:
            if state.token is None or self.headers.get("Authorization") == f"Bearer {state.token}":
                return True
            self._json(401, {"error": "unauthorized"})
            return False

        def do_GET(self) -> None:
            if self.path == "/v2/health/ready":
                return self._json(200, {"ready": True})
            if not self._authorized():
                return None
            if self.path.rstrip("/") != f"/v2/models/{state.name}":
                return self._json(404, {"error": f"no model at {self.path}"})
            return self._json(200, {
                "name": state.name, "versions": ["1"], "platform": "pytorch",
                "inputs": [{"name": "input-0", "datatype": "FP32",
                            "shape": [-1, 3, state.side, state.side]}],
                "outputs": [{"name": "output-0", "datatype": "FP32",
                             "shape": [-1, state.num_classes]}],
            })  # fmt: skip

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(min(length, MAX_BODY))
            if not self._authorized():
                return None
            if self.path == "/predict":
                return self._predict(body)
            if self.path.rstrip("/") != f"/v2/models/{state.name}/infer":
                return self._json(404, {"error": f"no model at {self.path}"})
            with state.lock:
                state.infer_requests += 1
                fault = state.faults.pop(0) if state.faults else ""
            return self._infer(body, fault)

        def _predict(self, body: bytes) -> None:
            """Another JSON API: ``{"instances": [images]}`` -> ``{"predictions": [probs]}``."""
            x = torch.tensor(json.loads(body)["instances"], dtype=torch.float32)
            with torch.inference_mode():
                probs = torch.softmax(state.model(x).float(), dim=1)
            return self._json(200, {"predictions": probs.tolist()})

        def _infer(self, body: bytes, fault: str) -> None:
            kind, _, arg = fault.partition(":")
            if kind in ("500", "503"):
                return self._json(int(kind), {"error": "model server failure"})
            if kind == "429":
                return self._json(429, {"error": "slow down"}, {"Retry-After": arg or "0"})
            if kind == "sleep":
                time.sleep(float(arg))
            if kind == "close":
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            try:
                request = json.loads(body)
                tensor = request["inputs"][0]
                x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                return self._json(400, {"error": f"bad request: {exc}"})
            with torch.inference_mode():
                logits = state.model(torch.from_numpy(x)).float().numpy()
            with state.lock:
                state.images += x.shape[0]
                if state.noise:
                    logits = logits + state.rng.normal(0, state.noise, logits.shape)
            if kind == "wrong-classes":
                logits = logits[:, :-1]
            if kind == "wrong-rows":
                logits = logits[:-1]
            doc = {"model_name": state.name, "outputs": [{
                "name": "output-0", "shape": list(logits.shape), "datatype": "FP32",
                "data": "@DATA@"}]}  # fmt: skip
            data = ",".join(logits.astype(np.float32).reshape(-1).astype(str).tolist())
            out = json.dumps(doc).replace('"@DATA@"', f"[{data}]").encode()
            if kind == "truncated":
                out = out[: len(out) // 2]
            return self._send(200, out)

    return Handler


class OipServer:
    """``with OipServer(model, side=32, num_classes=10) as server: server.url``."""

    def __init__(self, model, *, side: int, num_classes: int, name: str = "suspect", **options):
        self.state = ServerState(model=model, name=name, side=side, num_classes=num_classes,
                                 **options)  # fmt: skip
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.httpd.daemon_threads = True
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

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
