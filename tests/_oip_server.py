"""Open Inference Protocol servers on 127.0.0.1 for the remote tests: mapguard's own small
server (``mapguard._oip_server``, standard library; ``kserve`` is not installed: it pins
protobuf 6 and psutil 5 against the project's ONNX stack and pulls in kubernetes, grpc and
pandas), plus faults on purpose.

``faults`` makes the server misbehave, one fault per inference request in order (then it
behaves): ``"500"``, ``"503"``, ``"429:S"`` (``Retry-After: S``), ``"sleep:S"`` (answers after
S seconds: a client timeout), ``"truncated"``, ``"wrong-classes"``, ``"wrong-rows"``,
``"close"`` (drops the connection). ``noise`` adds fresh random noise to every answer (a
nondeterministic endpoint); ``token`` requires ``Authorization: Bearer <token>``. ``POST
/predict`` is another JSON API (``{"instances": [NCHW images]}`` -> ``{"predictions":
[probabilities]}``) for request templates.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from mapguard._oip_server import OipHandler
from mapguard._oip_server import OipServer as _Base


class _FaultyHandler(OipHandler):
    def route(self, path: str, body: bytes) -> None:
        if path == "/predict":
            x = torch.tensor(json.loads(body)["instances"], dtype=torch.float32)
            with torch.inference_mode():
                probs = torch.softmax(self.state.model(x).float(), dim=1)
            return self.send_json(200, {"predictions": probs.tolist()})
        if path != f"/v2/models/{self.state.name}/infer":
            return super().route(path, body)
        with self.state.lock:
            fault = self.state.faults.pop(0) if self.state.faults else ""
        kind, _, arg = fault.partition(":")
        if kind in ("500", "503"):
            return self.send_json(int(kind), {"error": "model server failure"})
        if kind == "429":
            return self.send_json(429, {"error": "slow down"}, {"Retry-After": arg or "0"})
        if kind == "close":
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if kind == "sleep":
            time.sleep(float(arg))
        return self._answer(body, kind)

    def _answer(self, body: bytes, kind: str) -> None:
        logits = self.logits(body)
        if self.state.noise:
            with self.state.lock:
                logits = logits + self.state.rng.normal(0, self.state.noise, logits.shape)
        if kind == "wrong-classes":
            logits = logits[:, :-1]
        if kind == "wrong-rows":
            logits = logits[:-1]
        out = self.infer_body(logits)
        return self.send_body(200, out[: len(out) // 2] if kind == "truncated" else out)


class OipServer(_Base):
    """``with OipServer(model, side=32, num_classes=10, faults=[...]) as server: server.url``."""

    def __init__(self, model, *, faults=(), noise: float = 0.0, **options) -> None:
        super().__init__(model, handler=_FaultyHandler, **options)
        self.state.faults = list(faults)
        self.state.noise = noise
        self.state.rng = np.random.default_rng(0)
